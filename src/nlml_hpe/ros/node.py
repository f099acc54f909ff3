"""ROS 2 lifecycle node ``head_pose_node``: camera images in, head poses, TF and gaze out.

The node is thin: its parts are :mod:`~nlml_hpe.ros.parameters` (declared from
:mod:`nlml_hpe.options`), :mod:`~nlml_hpe.ros.inputs` (image and camera_info
checks, decoding within the decode budget), :class:`~nlml_hpe.frame_pump.FramePump`
(the newest frame on a worker thread, a decode stage of its own for messages
that cost more than the stream's usual, rate cap, figures), the estimator and
:class:`~nlml_hpe.face_stream.FaceStream` (ids, smoothing, positions,
looking-at), :mod:`~nlml_hpe.ros.outputs` (every pose output, one row each),
:mod:`~nlml_hpe.ros.hri` (ROS4HRI) and :mod:`~nlml_hpe.ros.diagnostics`.  Topics, frames
and parameters: README.

Lifecycle (a ROS 2 managed node): configure loads the model and
advertises the outputs; activate subscribes and starts the worker; deactivate
unsubscribes, stops the worker and withdraws the ROS4HRI faces; cleanup
releases what configure made.  Every output but /diagnostics is a lifecycle
publisher: nothing is published unless the node is active.  The constructor
makes no transition: with ``autostart`` (default true) a one-shot timer runs
configure and activate once the node spins, so ``ros2 run`` and the launch
file need no lifecycle manager; if either fails, the timer's callback raises
:class:`StartError` out of the executor's spin and :func:`main` exits with the
reason.  Under a lifecycle manager set ``autostart`` false.

A parameter change that needs a new estimator builds and test-runs it in the
parameter callback and is refused, with the reason, when that fails; the
running estimator is swapped once the change is accepted.

Transport: raw 640x480 images over Fast DDS's default transports (UDP, with
fragmentation) are mostly lost with best-effort QoS on a default Linux socket
buffer, and slow when they arrive.  Export ``FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA``
in every process of the image pipeline (camera driver, this node) or subscribe
to ``image/compressed`` (``use_compressed``); ``nlml-hpe benchmark node
[--large-data]`` measures both.  Do not combine LARGE_DATA with
``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``: most raw frames were lost (14 of 99
arrived, issue 12); on one machine keep the default discovery range (SUBNET)
and isolate with ``ROS_DOMAIN_ID``, or subscribe to ``image/compressed``.
"""

import signal
import threading

from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
from rcl_interfaces.msg import SetParametersResult
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from std_msgs.msg import Header

from ..face_stream import FaceStream
from ..frame_pump import FramePump
from ..image_decode import budget_of, source_poses
from ..options import DecodeConfig, EstimatorConfig
from . import hri, parameters
from .diagnostics import Warnings, diagnostic_array, frame_record
from .faces import FaceIds
from .inputs import TF_AVAILABLE, CameraInput, TargetLookup
from .outputs import FrameResult, Outputs

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


class StartError(RuntimeError):
    """autostart's configure or activate failed (the message says why)."""


def release_free_memory():
    """Hand memory freed by a closed estimator back to the OS (glibc; no-op elsewhere).

    Without it glibc keeps the freed arenas: RSS rose about 90 MB over 400
    reloads, then stayed; with it RSS stays within a few MB (README, Hostile input).
    """
    try:
        import ctypes

        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):
        pass


#: Allocations of at least this many bytes are mapped on their own (glibc; main() sets it).
MMAP_THRESHOLD = 2 ** 20


def bound_heap(threshold=MMAP_THRESHOLD):
    """Have glibc map every allocation of ``threshold`` bytes or more on its own (no-op elsewhere).

    Such a block goes back to the OS when it is freed.  By default glibc raises
    its threshold to the largest block freed (up to 32 MiB), and large blocks
    then come from the heap, which keeps them: 4.8 MB hostile messages at
    20 Hz raised the RSS of a node fed in-process by 55 MiB in 30 s, then
    stayed; with a fixed 1 MiB threshold by nothing beyond the first frames'
    20 MiB (docs/hostile_input.md).  A 640x480 frame (0.9 MB) stays on the heap.
    """
    try:
        import ctypes

        ctypes.CDLL('libc.so.6').mallopt(-3, int(threshold))  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


def close_estimator(est, given=None):
    """Close an estimator the node built (never ``given``, the caller's) and free its memory."""
    if est is not None and est is not given and hasattr(est, 'close'):
        est.close()
        release_free_memory()


def problems_of(est):
    """Return the options ``est`` was asked for that are not in effect, with the reasons."""
    return list(getattr(est, 'problems', ()))


def build_estimator(values, given=None, allowed=None):
    """Return ``(estimator, '')``, test-run once, or ``(None, reason)`` when it fails.

    ``given``: use this estimator instead of building one from the parameter ``values``.
    ``allowed``: it also fails if an option is not in effect (:func:`problems_of`) that
    is not among these (None: any may be).
    """
    est = given
    try:
        if est is None:
            from ..estimator import HeadPoseEstimator

            est = HeadPoseEstimator.from_pretrained(
                path=values['model_path'] or None, streaming=True,
                config=EstimatorConfig.from_node(values))
        est.estimate(np.zeros((64, 64, 3), np.uint8))  # loads the face models now
    except Exception as exc:  # noqa: BLE001 - any failure is reported, not raised
        close_estimator(est, given)
        return None, f'{type(exc).__name__}: {exc}'
    new = [] if allowed is None else [p for p in problems_of(est) if p not in allowed]
    if new:
        close_estimator(est, given)
        return None, '; '.join(new)
    return est, ''


def rebuild_for(values, changes, allowed):
    """Build the estimator parameter ``changes`` need: ``(estimator or None, refusal reason)``.

    None and no reason when no change needs one (:data:`~.parameters.RELOAD`); a reason
    when building it fails, or when it would add an option not in effect (``allowed``).
    """
    if not any(k in parameters.RELOAD and changes[k] != values[k] for k in changes):
        return None, ''
    est, why = build_estimator(dict(values, **changes), allowed=allowed)
    if est is not None:
        return est, ''
    changed = ', '.join(sorted(parameters.RELOAD & set(changes)))
    return None, (f'cannot apply {changed}: building the estimator failed ({why}); '
                  'keeping the running one')


class HeadPoseNode(LifecycleNode):
    """Lifecycle node over :class:`~nlml_hpe.estimator.HeadPoseEstimator` (module docstring).

    Read-only attributes: ``estimator`` (None unless configured), ``pump`` (the
    :class:`~nlml_hpe.frame_pump.FramePump`, running while active), ``outputs``
    and ``hri`` (the pose and ROS4HRI outputs, None unless configured),
    ``face_ids`` (:class:`~nlml_hpe.ros.faces.FaceIds`), ``configure_error``.
    """

    def __init__(self, node_name='head_pose_node', *, estimator=None, **kwargs):
        """Declare the parameters (ValueError if one is unusable); ``estimator``: use that one."""
        # What the transitions hold, declared up front.
        self._given_estimator = estimator
        self.estimator = None  # configure .. cleanup (swapped under _est_lock)
        self._est_lock = threading.Lock()  # held while a frame is processed, and to swap
        self._prepared = None  # estimator built by an accepted change, swapped in after it
        self.configure_error = ''  # why the last configure failed
        self.outputs = None  # Outputs: configure .. cleanup
        self.hri = None  # HriFaces: configure .. cleanup, with ros4hri
        self._diag_pub = self._diag_timer = None  # configure .. cleanup
        self._camera_subs = []  # activate .. deactivate
        self._last_header = Header()  # of the last frame published
        self._last_frame = frame_record()
        self.pump = self._autostart = self.face_ids = None  # made once the node exists:
        self._warn = self._values = self._stream = self._input = self._target = None
        self._budget = None  # the DecodeBudget of the decode parameters, once declared
        super().__init__(node_name, **kwargs)
        self._warn = Warnings(self.get_logger(), live=self.context.ok)
        try:
            self._values = parameters.declare(self, TF_AVAILABLE)
        except ValueError:
            super().destroy_node()
            raise
        self.add_pre_set_parameters_callback(parameters.widen)
        self.add_on_set_parameters_callback(self._check_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self._stream = FaceStream(**parameters.stream_options(self._values))
        self._budget = budget_of(DecodeConfig.from_node(self._values))
        self.pump = FramePump(self._process, decode=self._decode, on_error=self._frame_failed,
                              clock=self._now_s, name='head_pose_worker')
        self.pump.max_rate = self._values['max_rate']
        self._input = CameraInput(self._warn, self.pump.count)
        self._target = TargetLookup(self, self._warn)
        self.face_ids = FaceIds(rep155=self._values['ros4hri'])
        if self._values['autostart']:
            self._autostart = self.create_timer(0.0, self._start)
        else:
            self.get_logger().info('head_pose_node unconfigured (autostart is false): waiting '
                                   'for the configure and activate transitions')

    # ----------------------------------------------------------- inspection
    @property
    def stats(self):
        """Frame counts: received, rejected (and rejected_<reason>), dropped, processed, ..."""
        return self.pump.counts

    @property
    def decode_budget(self):
        """The :class:`~nlml_hpe.image_decode.DecodeBudget` compressed images are decoded with."""
        return self._budget

    @property
    def warnings(self):
        """Warning counts by kind (every occurrence, logged or not)."""
        return self._warn.counts

    @property
    def camera_matrix(self):
        """K of the latest valid camera_info (None: none yet, or the last was invalid)."""
        return getattr(self._input.camera, 'k', None)

    @property
    def camera_problem(self):
        """Why no camera_info is in effect ('' when one is): refused, none, another size."""
        return self._input.camera_problem

    # ------------------------------------------------------------ lifecycle
    def _start(self):
        """Autostart's one-shot timer: configure, then activate (StartError on failure)."""
        self._autostart.cancel()
        if self.trigger_configure() != SUCCESS:
            raise StartError(self.configure_error or 'configure failed')
        if self.trigger_activate() != SUCCESS:
            raise StartError('activate failed')

    def on_configure(self, state):
        """Load the model (test-run once) and advertise the outputs.

        SUCCESS -> inactive: the model is loaded, the publishers exist (silent
        until activate) and /diagnostics reports 'inactive'.  FAILURE (the model
        or a face model does not load) -> unconfigured, holding nothing; the
        reason is logged and kept in ``configure_error``.
        """
        est, reason = build_estimator(self._values, self._given_estimator)
        if est is None:
            self.configure_error = reason
            self.get_logger().error(f'configure failed: {reason}')
            return FAILURE
        self.configure_error = ''
        with self._est_lock:
            self.estimator = est
        for problem in problems_of(est):  # options asked for but not in effect
            self.get_logger().warning(problem)
        self._stream.reset()
        self.outputs = Outputs(self)
        self.outputs.create()
        if self._values['ros4hri'] and not hri.available():
            self.get_logger().warning(
                'ros4hri: hri_msgs is not installed (ROS: the hri_msgs package; pip route: '
                'bootstrap.sh generates it); the ROS4HRI interface is off')
        elif self._values['ros4hri']:
            self.hri = hri.HriFaces(self)
            self.hri.create()
        self._diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._diag_timer = self.create_timer(1.0, self._publish_diagnostics)
        self.get_logger().info('head_pose_node configured (model loaded)')
        return SUCCESS

    def on_activate(self, state):
        """Subscribe to the camera, enable the publishers and start the worker.

        SUCCESS -> active.  (An exception here -> on_error.)
        """
        compressed = self._values['use_compressed']
        self._camera_subs = self._input.subscribe(self, compressed, self._on_image)
        result = super().on_activate(state)  # enables the lifecycle publishers
        self.pump.start()
        topic = 'image/compressed' if compressed else 'image'
        self.get_logger().info(
            f'head_pose_node ready: listening on {self.resolve_topic_name(topic)}, '
            f'publishing {self.resolve_topic_name("head_pose")}')
        return result

    def on_deactivate(self, state):
        """Unsubscribe, stop the worker (its frame is finished), withdraw the ROS4HRI faces.

        /humans/faces/tracked gets an empty list and the per-face topics go;
        then the publishers are silenced.  SUCCESS -> inactive.
        """
        self._stop_listening()
        self.get_logger().info('head_pose_node inactive (unsubscribed)')
        return super().on_deactivate(state)

    def on_cleanup(self, state):
        """Release what configure made: publishers, diagnostics, the model, tracks, camera.

        SUCCESS -> unconfigured.
        """
        self._release_configured()
        self.get_logger().info('head_pose_node unconfigured (model released)')
        return SUCCESS

    def on_shutdown(self, state):
        """Release whatever the state holds (as deactivate, then cleanup).

        SUCCESS -> finalized.
        """
        self._release()
        return SUCCESS

    def on_error(self, state):
        """After an exception in a transition, release everything as on_shutdown does.

        SUCCESS -> unconfigured (configure may be tried again).
        """
        self._release()
        return SUCCESS

    def _release(self):
        self._stop_listening()
        self._release_configured()

    def _stop_listening(self):
        """Undo activate (idempotent): subscriptions, worker, ROS4HRI faces."""
        subscriptions, self._camera_subs = self._camera_subs, []
        for sub in subscriptions:
            self.destroy_subscription(sub)
        if self.pump is not None and not self.pump.stop():
            self.get_logger().warning('the worker did not stop within 5 s')
        if self.hri is not None:  # an empty list, unless Ctrl-C has shut the context down
            self.hri.withdraw(Header(stamp=self.get_clock().now().to_msg(),
                                     frame_id=self._last_header.frame_id)
                              if self.context.ok() else None)

    def _release_configured(self):
        """Undo configure (idempotent), in the reverse order."""
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self.destroy_publisher(self._diag_pub)
            self._diag_timer = self._diag_pub = None
        if self.hri is not None:
            self.hri.destroy()
            self.hri = None
        if self.outputs is not None:
            self.outputs.destroy()
            self.outputs = None
        with self._est_lock:
            est, self.estimator = self.estimator, None
        close_estimator(est, self._given_estimator)
        if self.pump is not None:
            self._stream.reset()
            self._input.reset()

    def destroy_node(self):
        """Release everything, then destroy the node."""
        if self._autostart is not None:
            self.destroy_timer(self._autostart)
            self._autostart = None
        self._release()
        return super().destroy_node()

    # ----------------------------------------------------------- parameters
    def _check_parameters(self, params):
        """On-set callback: refuse (with the reason) values that cannot take effect."""
        values = {p.name: p.value for p in params if p.name in parameters.SPECS}
        reason = parameters.problem(values, TF_AVAILABLE)
        if not reason and self.estimator is not None:
            self._prepared, reason = rebuild_for(self._values, values,
                                                   problems_of(self.estimator))
            if reason:
                self._warn('reload', f'parameter change refused: {reason}')
        return SetParametersResult(successful=not reason, reason=reason)

    def _apply_parameters(self, params):
        """Post-set callback: apply accepted values (a new estimator is swapped in)."""
        values = {p.name: parameters.coerce(parameters.SPECS[p.name], p.value)
                  for p in params if p.name in parameters.SPECS}
        new, self._prepared = self._prepared, None
        if new is not None:
            with self._est_lock:  # waits for the frame in flight, if any
                old, self.estimator = self.estimator, new
            self._stream.reset()  # new detector, new tracks
            close_estimator(old, self._given_estimator)
            self.get_logger().info('estimator rebuilt with the new parameters')
        self._values = dict(self._values, **values)  # the worker reads one snapshot a frame
        if any(s.name in values for s in DecodeConfig.specs()):
            self._budget = budget_of(DecodeConfig.from_node(self._values))
        self._stream.configure(**parameters.stream_options(values))
        self.pump.max_rate = self._values['max_rate']

    # ------------------------------------------------------------ per frame
    def _now_s(self):
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_image(self, msg, compressed):
        """Image callback: cheap checks, then the frame waits for the pump (newest only)."""
        self._input.receive(self.pump, msg, compressed, self._values['camera_frame'],
                            self._budget)

    def _decode(self, planned):
        """Decode for the pump: return the :class:`~nlml_hpe.ros.inputs.InputFrame`, or None."""
        return self._input.decode(planned, self._values['camera_frame'])

    def _frame_failed(self, exc):
        """Warn of a frame the worker could not process (but not while shutting down)."""
        if self.context.ok():  # after Ctrl-C the publishers' context is gone: no noise
            self._warn('error', f'frame skipped: {type(exc).__name__}: {exc}')

    def _process(self, frame):
        """Estimate, track and publish one decoded frame (the worker's job).

        The estimator reads ``frame.rgb`` (at 1/``frame.scale``) with its camera;
        the stream and the outputs get the poses in the message's own pixels.
        """
        msg, values = frame.msg, self._values
        with self._est_lock:
            if self.estimator is None or self.outputs is None:
                return
            estimate = self.estimator.estimate(frame.rgb, camera=frame.decoded_camera)
            if not self.context.ok():  # Ctrl-C meanwhile: nothing can be published
                return
            faces = source_poses(estimate, frame.scale)
            if not faces:
                self.pump.count('no_face')
                self._warn('no_face', 'no face in the image')
            target = self._target(values['looking_target'], values['looking_target_frame'],
                                  frame.frame_id)
            stream_faces, skipped = self._stream.update(
                faces, frame.time_s, frame.size, frame.k,
                target=False if target is None else target)
            if skipped:
                self.pump.count('faces_nonfinite', skipped)
                self._warn('nonfinite', f'estimator returned {skipped} non-finite pose(s); '
                           'face(s) dropped')
            header = Header(stamp=msg.header.stamp, frame_id=frame.frame_id)
            result = FrameResult(header, stream_faces, frame.rgb, self.face_ids, values,
                                 target, size=frame.size, scale=frame.scale)
            self.outputs.publish(result)
            if self.hri is not None:
                self.hri.publish(result)
        self._last_header = header
        self._last_frame = frame_record(len(result.shown), estimate.timings, frame, skipped)

    def _publish_diagnostics(self):
        self._diag_pub.publish(diagnostic_array(
            self.get_fully_qualified_name(), self.get_clock().now().to_msg(), self.pump.running,
            self.pump.figures(), dict(self._last_frame, **self._input.camera_state(),
                                      problems=problems_of(self.estimator))))


def main(args=None):
    """Entry point of ``ros2 run nlml_hpe head_pose_node``: exit 1 with the reason on failure."""
    logger = rclpy.logging.get_logger('head_pose_node')
    bound_heap()  # before any large message is received
    try:
        with rclpy.init(args=args):
            try:
                node = HeadPoseNode()
            except ValueError as exc:  # a parameter value that cannot be used
                logger.fatal(f'cannot start: {exc}')
                return 1
            try:
                rclpy.spin(node)
            except StartError as exc:  # autostart: the model did not load
                logger.fatal(f'cannot start: {exc}')
                return 1
            finally:
                # Ctrl-C in a terminal under `ros2 launch` signals the node twice (the
                # process group, then launch): a second KeyboardInterrupt must not break
                # the cleanup (it printed a traceback from LiteRT's Interpreter.__del__).
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                node.destroy_node()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    return 0


if __name__ == '__main__':
    import sys

    sys.exit(main())
