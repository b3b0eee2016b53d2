"""The series kinds: window rows and the frozen series pipeline, the online detector and its alarm scores."""
