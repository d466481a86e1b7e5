"""Who is calling and whether they may: identity from tokens, admission, rate limits."""
