"""Task suites: the shipped ones (repositories with hidden tests and a solution) and how they are found."""
