# syntax=docker/dockerfile:1
# One non-root image with the `xaynet` command: the operator, the coordinator, and a drop-in
# for the original XayNet v0.11.0 coordinator image.
#   ours:      args: [coordinator, --config, /etc/xaynet/config.toml]   (what the operator runs)
#   original:  /app/coordinator -c /app/config.toml                     (its command)
#   no args:   a coordinator from the config mounted at /etc/xaynet/config.toml, else /app/config.toml
#   operator:  args: [operator, --all-namespaces]
# Build:  docker build -t ghcr.io/xaynet/xaynet:0.1.0 .   (runs the `test` stage: lint + smoke start)
# The base is pinned to one Python release and Debian version; pin its digest too with
#   --build-arg PYTHON_IMAGE=python:3.11.11-slim-bookworm@sha256:<digest>
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY xaynet/ xaynet/
COPY coordinator/ coordinator/
COPY operator/ operator/
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM ${PYTHON_IMAGE} AS runtime
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin xaynet && mkdir -p /etc/xaynet
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY --chmod=0755 docker/entrypoint docker/coordinator /app/
USER 10001
EXPOSE 8081
ENTRYPOINT ["/app/entrypoint"]
CMD []

# Build-time test: lint the sources, then start a coordinator the original's way and ask /healthz.
FROM runtime AS test
USER root
RUN pip install --no-cache-dir "ruff==0.17.6"
COPY --from=build /src /src
COPY configs/ /src/configs/
COPY --chmod=0755 docker/smoke-test /app/
RUN cd /src && ruff check xaynet coordinator operator
USER 10001
RUN /app/smoke-test /src/configs/config.toml && touch /tmp/tested

# The image: the runtime stage, built only once the test stage passed.
FROM runtime
COPY --from=test /tmp/tested /app/.tested
