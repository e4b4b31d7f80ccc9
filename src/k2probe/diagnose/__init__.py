"""The guide's first steps as commands: doctor, smoke, chat, snippets, quickstart."""
