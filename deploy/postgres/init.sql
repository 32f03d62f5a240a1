-- The bank's databases, for the official postgres image (docker-compose).
-- The local launcher creates the same ones itself (bank_deploy.postgres.create_databases).
CREATE DATABASE bank_accounts;
CREATE DATABASE bank_transfers;
CREATE DATABASE bank_read;
CREATE DATABASE bank_commands;
