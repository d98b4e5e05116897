# Environment image: the repository at /testbed (a clean git repo at its base commit) with
# its dependencies in /opt/venv. Built with no network: every wheel comes from the context.
FROM {base}
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 LC_ALL=C.UTF-8 \
    PIP_NO_INDEX=1 PIP_FIND_LINKS=/opt/swelego/wheels PIP_DISABLE_PIP_VERSION_CHECK=1
COPY wheels /opt/swelego/wheels
RUN python3 -m venv /opt/venv \
 && pip install -q --no-index --find-links /opt/swelego/wheels -r /opt/swelego/wheels/requirements.txt
COPY testbed /testbed
COPY install-testbed.sh setup.sh version install-mode /opt/swelego/
RUN bash /opt/swelego/install-testbed.sh
WORKDIR /testbed
ENTRYPOINT ["/usr/bin/tini", "-s", "--"]
CMD ["sleep", "infinity"]
