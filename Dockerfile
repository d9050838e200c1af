# The production image: gunicorn for web, the same image runs the Celery worker.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
RUN pip install --upgrade pip && pip install .
COPY . .
RUN DEBUG=1 python manage.py collectstatic --no-input -v0
RUN useradd --create-home stepaudit && mkdir -p /app/var && chown stepaudit /app/var
USER stepaudit
EXPOSE 8000
CMD ["gunicorn", "auditapp.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "4", \
     "--threads", "2", "--access-logfile", "-"]
