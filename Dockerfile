# One image for every role of the lab; the role is the command (see docker-compose.yml).
#
# BASE is python:3.11-slim-bookworm for users with internet access, or mitmlab-base:bookworm, which
# scripts/offline-base makes without any registry (a debootstrap of Debian bookworm). With wheels in
# wheelhouse/ (scripts/offline-base puts them there) pip installs from them alone, with --no-index;
# with none it installs from PyPI. Either way nothing else is downloaded.
ARG BASE=python:3.11-slim-bookworm
# The image the roles run on; the client's (WITH_CLIENTS=1) may be a base that already holds the real
# clients (scripts/offline-base makes one), or the same BASE, onto which they are installed.
ARG RUNTIME_BASE=${BASE}

FROM ${BASE} AS dependencies
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_FIND_LINKS=/wheelhouse
COPY wheelhouse/ /wheelhouse/
COPY pyproject.toml /src/
RUN if ls /wheelhouse/*.whl >/dev/null 2>&1; then export PIP_NO_INDEX=1; fi \
 && python3 -c "import tomllib; print('\n'.join(tomllib.load(open('/src/pyproject.toml', 'rb'))['project']['dependencies']))" >/tmp/requirements.txt \
 && python3 -m venv /opt/mitmlab \
 && /opt/mitmlab/bin/pip install --quiet -r /tmp/requirements.txt \
 && /opt/mitmlab/bin/pip uninstall --quiet --yes pip setuptools

# The dependencies are one layer and the lab's code another: a change to the code rebuilds only the
# last, small layers. No pip, setuptools, wheelhouse or cache reaches this stage, and no compiler is
# in either (every dependency is a wheel).
FROM ${RUNTIME_BASE}
# Every role's image has `ip` and `iptables` (ARP positioning: the client pins a neighbour, the attacker
# redirects the server's ports to mitmproxy, docs/arp.md) and libpcap (scapy compiles the filter of the
# attacker's capture of each run with it, docs/wireshark.md); the client's also carries the real clients
# of the real-TLS stack (docs/tls.md), and libatomic1, which Playwright's driver (Node.js) needs. All from Debian's packages, unless the base has them already.
ARG WITH_CLIENTS=0
RUN packages=""; \
    (command -v ip && command -v iptables) >/dev/null || packages="iproute2 iptables"; \
    ldconfig -p | grep -q 'libpcap\.so' || packages="$packages libpcap0.8"; \
    if [ "$WITH_CLIENTS" = 1 ] && ! (command -v curl && command -v openssl && command -v chromium \
        && command -v chromium-headless-shell && command -v certutil && ldconfig -p | grep -q 'libatomic\.so') \
        >/dev/null; then \
      packages="$packages curl openssl chromium chromium-headless-shell libnss3-tools ca-certificates libatomic1"; \
    fi; \
    if [ -n "$packages" ]; then \
      apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $packages >/dev/null \
      && rm -rf /var/lib/apt/lists/*; \
    fi
COPY --from=dependencies /opt/mitmlab /opt/mitmlab
RUN printf '#!/bin/sh\nexec /opt/mitmlab/bin/python3 -m lab "$@"\n' >/usr/local/bin/mitmlab \
 && chmod 0755 /usr/local/bin/mitmlab
ENV PATH=/opt/mitmlab/bin:$PATH \
    PYTHONPATH=/opt/mitm-lab \
    MITMLAB_ADDONS=/opt/mitm-lab/addons \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /lab
CMD ["mitmlab", "--help"]
COPY addons/ /opt/mitm-lab/addons/
COPY lab/ /opt/mitm-lab/lab/
