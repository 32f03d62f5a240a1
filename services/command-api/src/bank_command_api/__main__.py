"""`python -m bank_command_api`: run the command API."""

from bank_command_api.app import create_app
from bank_command_api.settings import CommandApiSettings
from bank_shared.service import serve

if __name__ == "__main__":
    settings = CommandApiSettings()
    serve(create_app(settings), settings)
