# The Airflow image of the cvtune stack (docker-compose.yaml builds it for every Airflow service):
# the official Airflow image, the pinned runtime stack of requirements.txt, the cvtune provider and
# the training code of include/.
#
# The tag must match the `apache-airflow==` pin of requirements.txt and the Python the pins were
# frozen for (3.11); tests/test_compose.py checks both.
FROM apache/airflow:3.3.2-python3.11

# The official image docs: install packages as the airflow user, never as root.
USER airflow

# 1. Dependencies, in their own layer: rebuilt only when requirements.txt changes, not on every
#    code edit.
#    "apache-airflow==${AIRFLOW_VERSION}" (AIRFLOW_VERSION is set by the base image) is what the
#    image docs prescribe so that pip never swaps the image's Airflow for another version: with
#    requirements.txt pinning the same version it changes nothing, and if the pin ever drifts from
#    the FROM tag the build stops with a resolver conflict instead of quietly reinstalling Airflow.
#    No Airflow constraints file (constraints-3.3.2/constraints-3.11.txt): requirements.txt is
#    already a complete freeze of a tested environment, and pip would refuse every package where
#    the freeze and the constraints pick different versions.
COPY --chown=airflow:0 requirements.txt /tmp/cvtune-src/requirements.txt
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /tmp/cvtune-src/requirements.txt

# 2. The provider (distribution airflow-provider-cvtune, package cvtune from plugins/). Installing
#    it, not just mounting plugins/, registers the `apache_airflow_provider` entry point: Airflow
#    then lists the provider and knows the `cvtune` connection type.
#    --no-deps: everything it needs is already installed, at the versions requirements.txt pins.
#    Without it pip would resolve pyproject.toml's open ranges (apache-airflow>=3.3,<3.4,
#    xgboost>=2.0, ...) once more and could move pinned packages, Airflow included, away from the
#    freeze. Entry points come from the package's own metadata, so --no-deps does not affect them.
COPY --chown=airflow:0 pyproject.toml README.md /tmp/cvtune-src/
COPY --chown=airflow:0 plugins/ /tmp/cvtune-src/plugins/
RUN pip install --no-cache-dir --no-deps /tmp/cvtune-src \
    && rm -rf /tmp/cvtune-src \
    && python -c "from importlib.metadata import entry_points as eps; import cvtune; \
assert any(ep.value.startswith('cvtune.') for ep in eps(group='apache_airflow_provider')), \
'cvtune provider entry point not registered'" \
    && mkdir -p /opt/airflow/cvtune-artifacts

# 3. The training script, sample data and tuning configs. docker-compose.yaml mounts ./include
#    over this copy; without the mount (plain `docker run`, or a deployment) the image still has
#    them where the reference DAG looks.
COPY --chown=airflow:0 include/ /opt/airflow/include/
ENV CVTUNE_INCLUDE=/opt/airflow/include
