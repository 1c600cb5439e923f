-- The MLflow server's own database, beside the service's (POSTGRES_DB).
CREATE DATABASE mlflow;
