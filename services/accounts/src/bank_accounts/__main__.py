"""`python -m bank_accounts`: run the accounts service."""

from bank_accounts.app import create_app
from bank_accounts.settings import AccountsSettings
from bank_shared.service import serve

if __name__ == "__main__":
    settings = AccountsSettings()
    serve(create_app(settings), settings)
