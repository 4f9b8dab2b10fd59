"""`unetkit serve`: a trained model behind an HTTP API and a browser page (needs ``unetkit[serve]``)."""
