"""The API's routes, one module per resource group. Each route parses, calls one service function, renders."""
