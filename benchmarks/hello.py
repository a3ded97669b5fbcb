"""A FastAPI hello-world: `benchmarks/api.py` serves it like the platform (two uvicorn
processes) to print the machine's ceiling for any request beside the platform's figures."""

from fastapi import FastAPI

app = FastAPI()


@app.get("/hello")
async def hello() -> dict[str, str]:
    return {"status": "ok"}
