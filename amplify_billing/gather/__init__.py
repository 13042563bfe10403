"""Gathering: the reads from Amplify, Recurly and the journal that a command's pure core needs, as plain data."""
