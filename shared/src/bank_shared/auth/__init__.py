"""Who is calling: password logins, signed tokens, and the checks both APIs share."""
