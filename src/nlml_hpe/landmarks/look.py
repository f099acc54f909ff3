"""The look for new faces between frames (video): scheduled by one frame, collected by the next."""

from concurrent.futures import Future, ThreadPoolExecutor, wait


class Look:
    """A look for new faces while faces are tracked: some detector runs between two frames.

    Its life: a frame that tracks faces and has a detector run due does not
    run it itself but schedules a look (:meth:`schedule`); the look starts
    (:meth:`start`) once that frame's work is done
    (:meth:`~.extractor.LandmarkExtractor.look_ahead`, or at the latest at the
    start of the next :meth:`~.extractor.LandmarkExtractor.read_frame`) and runs in the time
    before the next frame; that frame collects its faces (:meth:`collect`) after
    reading its tracked ones, waiting only for what is left of it.
    :meth:`cancel` drops it (a new sequence).

    Threads, out of the stage's budget of ``threads`` (``num_threads``): with
    two or more the look runs on its own worker thread, with its own
    single-threaded detectors, on its own copy of the frame (taken in
    :meth:`start`: the caller may reuse its frame buffer once the call
    returns); while it runs it holds one thread of the budget, and a frame's
    reads take the rest (:attr:`frame_threads`).  With one thread it runs
    inside :meth:`start`, on the caller's thread, with the frame's detectors
    (never while the frame searches with them).  Either way a new face
    appears one frame after its look.

    One caller at a time (the extractor's); the worker touches nothing but the
    look's detectors and its copy of the frame.
    """

    def __init__(self, search, threads):
        """Look with the detectors of ``search`` (a :class:`~.detection_plan.FaceSearch`).

        With ``threads`` >= 2 the look runs a single-threaded copy of
        ``search`` (loaded by its first run, on the worker), else ``search`` itself.
        """
        self.threads = int(threads)
        self._frame_search = search
        self._search = None
        self._worker = None
        self._scheduled = None  # (frame, runs, (width, height))
        self._started = None  # (future, (width, height))

    @property
    def scheduled(self):
        """Whether a look waits to start."""
        return self._scheduled is not None

    @property
    def started(self):
        """Whether a look started and was not collected yet."""
        return self._started is not None

    @property
    def running(self):
        """Whether a started look is still running."""
        return self._started is not None and not self._started[0].done()

    @property
    def frame_threads(self):
        """Threads a frame's reads may take now: the budget, less the look's while it runs."""
        return self.threads - 1 if self.running else self.threads

    def schedule(self, rgb, runs):
        """Schedule a look: the detector ``runs`` ``(kind, region)`` on frame ``rgb``."""
        self._scheduled = (rgb, list(runs), (rgb.shape[1], rgb.shape[0]))

    def start(self):
        """Start the scheduled look, if any: on the worker, or here with one thread.

        A look started before and not collected is dropped first.
        """
        if self._scheduled is None:
            return
        rgb, runs, size = self._scheduled
        self._scheduled = None
        self._drop_started()
        if self.threads > 1:
            if self._worker is None:
                self._worker = ThreadPoolExecutor(1, thread_name_prefix='nlml_hpe_look')
            future = self._worker.submit(self._run, rgb.copy(), runs)
        else:
            future = Future()
            try:
                future.set_result(self._run(rgb, runs))
            except Exception as exc:  # noqa: BLE001 - raised by collect(), as a worker's would be
                future.set_exception(exc)
        self._started = (future, size)

    def _run(self, rgb, runs):
        """Run the look on ``rgb`` (on the worker): its detectors load at the first look."""
        if self._search is None:
            self._search = (self._frame_search.single_threaded() if self.threads > 1 else
                            self._frame_search)
        return self._search(rgb, runs)

    def collect(self, size):
        """Return the faces the started look found (:class:`~.detection_plan.Found`), or ``[]``.

        Waits for a look still running.  A look of a frame of another ``size``
        ``(width, height)`` found nothing for this one: ``[]``.  Its detector's
        error, if any, is raised here.
        """
        if self._started is None:
            return []
        future, at = self._started
        self._started = None
        found = future.result()
        return found if at == tuple(size) else []

    def _drop_started(self):
        if self._started is not None:
            wait([self._started[0]])  # its detectors are free again; its faces are dropped
            self._started = None

    def cancel(self):
        """Drop the scheduled look and the started one (waiting for it to end)."""
        self._scheduled = None
        self._drop_started()

    def close(self):
        """Cancel, stop the worker and release the look's detectors (idempotent)."""
        self.cancel()
        if self._worker is not None:
            self._worker.shutdown(wait=True)
            self._worker = None
        self._search = self._frame_search = None
