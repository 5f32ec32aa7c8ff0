"""Environments the grader lets a student's agent play; their state never leaves the grader."""

from .tmaze import TMaze

__all__ = ["TMaze"]
