"""Resumable batch jobs: a spec names inputs, one operation and an output; the study database holds
the job and one task per series, so a killed batch resumes without redoing or losing finished work.
Tasks run in a local process pool or on a Dask distributed cluster (``medscan.batch.executors``).
"""
