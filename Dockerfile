# One image for the MLflow server, the trainer and the service.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY revenue_model revenue_model
COPY pipelines pipelines
COPY serving serving
COPY docker docker
COPY MLproject conda.yaml ./
RUN pip install --no-cache-dir .
ENV PYTHONUNBUFFERED=1
EXPOSE 5001
CMD ["python", "-m", "serving"]
