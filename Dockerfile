# One image for every role of the lab; the role is the command (see docker-compose.yml).
#
# BASE is python:3.11-slim-bookworm for users with internet access, or mitmlab-base:bookworm, which
# scripts/offline-base makes without any registry (a debootstrap of Debian bookworm). With wheels in
# wheelhouse/ (scripts/offline-base puts them there) pip installs from them alone, with --no-index;
# with none it installs from PyPI. Either way nothing else is downloaded.
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_FIND_LINKS=/wheelhouse
COPY wheelhouse/ /wheelhouse/
COPY pyproject.toml README.md /src/
# The dependencies first, in a layer of their own: a change to the lab's code does not reinstall them.
RUN if ls /wheelhouse/*.whl >/dev/null 2>&1; then export PIP_NO_INDEX=1; fi \
 && python3 -c "import tomllib; print('\n'.join(tomllib.load(open('/src/pyproject.toml', 'rb'))['project']['dependencies']))" >/tmp/requirements.txt \
 && python3 -m venv /opt/mitmlab \
 && /opt/mitmlab/bin/pip install --quiet -r /tmp/requirements.txt
COPY lab/ /src/lab/
RUN if ls /wheelhouse/*.whl >/dev/null 2>&1; then export PIP_NO_INDEX=1; fi \
 && /opt/mitmlab/bin/pip install --quiet --no-deps /src \
 && /opt/mitmlab/bin/pip uninstall --quiet --yes pip setuptools

FROM ${BASE}
COPY --from=build /opt/mitmlab /opt/mitmlab
COPY addons/ /opt/mitm-lab/addons/
ENV PATH=/opt/mitmlab/bin:$PATH \
    MITMLAB_ADDONS=/opt/mitm-lab/addons \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /lab
CMD ["mitmlab", "--help"]
