# syntax=docker/dockerfile:1
# Build stage: wheels for the service and its generated client.
FROM python:3.11-slim AS build
WORKDIR /src
COPY clients/python clients/python
COPY pyproject.toml README.md ./
COPY service service
RUN pip wheel --no-cache-dir --wheel-dir /wheels ./clients/python .

# Run stage: no compilers, no sources, a non-root user.
FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/seat-inventory --create-home seatinv
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels /wheels/*.whl && rm -rf /wheels
USER seatinv
WORKDIR /var/lib/seat-inventory
# Listening on every interface needs authentication: mount a principals file and
# set SEAT_INVENTORY_PRINCIPALS to it (README "Authentication and TLS"); without
# one the server refuses to start unless SEAT_INVENTORY_ALLOW_INSECURE_BIND=1.
ENV SEAT_INVENTORY_HOST=0.0.0.0 \
    SEAT_INVENTORY_PORT=50051 \
    SEAT_INVENTORY_LOG_FORMAT=json
EXPOSE 50051
# The check finds the server on SEAT_INVENTORY_PORT. With TLS on, give it the
# CA (and a client certificate under mutual TLS): override it, e.g.
# --health-cmd 'seat-inventory health --ca /certs/ca.pem --target <name>:50051'.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["seat-inventory", "health"]
ENTRYPOINT ["seat-inventory"]
CMD ["serve"]
