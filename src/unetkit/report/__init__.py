"""`unetkit report`: one self-contained HTML page of a run or an evaluation."""
