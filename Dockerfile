# FHIR River: one image for the four services (and the Compose stack's seed).
#   docker build -t fhir-river .
#   docker run fhir-river                          # api (the CMD): python -m api, gunicorn
#                                                  # on 3000, its metrics on 9100
#   docker run fhir-river python -m extractor      # or transformer, loader
# Settings come from the environment (.env.example lists them); docker-compose.yml
# runs the whole stack.

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    API_HOST=0.0.0.0 \
    METRICS_HOST=0.0.0.0

WORKDIR /app

# The dependencies first, from pyproject.toml alone: this layer is rebuilt only
# when they change, not at every edit of the code.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The project (what .dockerignore lets through): the packages, the example
# mappings and concept maps (MAPPINGS, CONCEPT_MAPS are relative to /app), the
# data tools of test/utils (the seed) and docker/seed.py.
COPY . .
RUN pip install --no-deps . \
    && rm -rf build ./*.egg-info \
    && groupadd --system --gid 10001 river \
    && useradd --system --uid 10001 --gid river --no-create-home --home-dir /app \
        --shell /usr/sbin/nologin river

USER 10001:10001

# The API (3000) and the metrics of the api, extractor, transformer and loader (9100-9103).
EXPOSE 3000 9100 9101 9102 9103
# python -m api runs gunicorn (API_WORKERS, 2) with what a bare `gunicorn api.app:...`
# lacks: the workers' metrics added up on METRICS_PORT_API, LOG_FORMAT for its own logs.
CMD ["python", "-m", "api"]
