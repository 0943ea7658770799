"""The one error shape of every refusal: `{detail, errors: [{row, column, message}]}`."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ErrorItem(BaseModel):
    row: int = Field(description="1-based line of the CSV (the header is row 1); 0 = the whole file/request")
    column: str | None = Field(description="The column (or field) at fault, if any")
    message: str


class ErrorResponse(BaseModel):
    detail: str
    errors: list[ErrorItem] = []

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "detail": "CSV refused: 2 problem(s)",
                    "errors": [
                        {"row": 3, "column": "Product Name", "message": "empty cell"},
                        {"row": 4, "column": "Input Image Urls", "message": "not an absolute http(s) URL: 'ftp://x'"},
                    ],
                },
                {"detail": "invalid API key", "errors": []},
            ]
        }
    }
