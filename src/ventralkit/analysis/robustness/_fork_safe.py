"""Imported first by the forkserver that forks the corruption workers: OpenCV is held to one thread before
anything runs OpenCV in that server.

OpenCV starts its thread pool on its first parallel call (frost's ``cv2.resize`` in the warm-up of
``_warm_numba``, for one). A process forked from a server whose pool is running inherits the pool's mutexes and
condition variables but none of its threads, and the child's first ``cv2.setNumThreads`` (or parallel call)
then waits forever in ``pthread_cond_destroy``: 8 of 10 runs of ``corrupt -j 2`` hung this way (issue 21). With
one thread set here, no pool is ever started in the server, so no worker can inherit one; a worker then works
with one OpenCV thread, which is what it wants anyway (one worker per core).
"""

import cv2

cv2.setNumThreads(1)
