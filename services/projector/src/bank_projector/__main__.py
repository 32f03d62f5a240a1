"""`python -m bank_projector`: run the projector."""

from bank_projector.app import create_app
from bank_projector.settings import ProjectorSettings
from bank_shared.service import serve

if __name__ == "__main__":
    settings = ProjectorSettings()
    serve(create_app(settings), settings)
