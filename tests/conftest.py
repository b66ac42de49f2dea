# Shared pytest configuration for pygmp's suite.  Keep the repo root off
# sys.path: tests must import the installed pygmp (with its compiled modules).
