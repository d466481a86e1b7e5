# TaskService server image: `taskservice serve`, `taskservice migrate`. See docs/deployment.md.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml requirements-runtime.lock README.md LICENSE ./
COPY src ./src
# Only the runtime lock: the dev lock's test, lint and browser tools have no place in the image.
RUN pip install --no-cache-dir -r requirements-runtime.lock && pip install --no-cache-dir --no-deps .
USER nobody
WORKDIR /tmp
EXPOSE 50051 8080
HEALTHCHECK --interval=10s --timeout=3s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"
ENTRYPOINT ["taskservice"]
CMD ["serve", "--grpc-addr", "0.0.0.0:50051", "--http-addr", "0.0.0.0:8080"]
