"""Developer tools: synthetic Capture files, Azurite, the local event poster.

Not part of the deployed app: `.funcignore` keeps this package out of what
`func azure functionapp publish` uploads, and nothing the app runs imports it.
"""
