"""`python -m bank_transfers_saga`: run the transfers saga."""

from bank_shared.service import serve
from bank_transfers_saga.app import create_app
from bank_transfers_saga.settings import SagaSettings

if __name__ == "__main__":
    settings = SagaSettings()
    serve(create_app(settings), settings)
