"""What the REST services share: problem answers, their OpenAPI, and LISTEN connections."""
