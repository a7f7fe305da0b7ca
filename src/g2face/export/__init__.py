"""Deployable exports of the shipped models (`g2face export`)."""
