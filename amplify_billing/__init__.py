"""amplify-billing: keeps Axway Amplify Marketplace and Recurly in step."""

__version__ = "0.1.0"
