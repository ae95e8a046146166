from synthaix.cli import app

app()
