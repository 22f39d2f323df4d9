# One non-root image with the `xaynet` command, for both the operator and the coordinator:
#   operator:    args: [operator, --all-namespaces]
#   coordinator: args: [coordinator, --config, /etc/xaynet/config.toml]   (port 8081)
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY xaynet/ xaynet/
COPY coordinator/ coordinator/
COPY operator/ operator/
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin xaynet
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 10001
EXPOSE 8081
ENTRYPOINT ["xaynet"]
CMD ["coordinator", "--config", "/etc/xaynet/config.toml"]
