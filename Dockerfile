# TaskService server image: `taskservice serve`, `taskservice migrate`. See docs/deployment.md.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml requirements.lock README.md ./
COPY src ./src
RUN pip install --no-cache-dir -r requirements.lock && pip install --no-cache-dir --no-deps .
USER nobody
WORKDIR /tmp
EXPOSE 50051 8080
HEALTHCHECK --interval=10s --timeout=3s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"
ENTRYPOINT ["taskservice"]
CMD ["serve", "--grpc-addr", "0.0.0.0:50051", "--http-addr", "0.0.0.0:8080"]
