"""Command-line flags made from the options table (:mod:`nlml_hpe.options`).

Each public option of a table is one flag, spelt as its node parameter
(``max_faces`` -> ``--max-faces``, ``perspective_warp_min_deg`` ->
``--perspective-warp-min-deg``), with the table's help and range; a switch
has both forms (``--rigid-fusion`` / ``--no-rigid-fusion``).  The CLI's older
spellings stay: ``--no-flip``, ``--no-fusion``, ``--no-warp`` and
``--threads``.  A flag not given leaves the option at the base table's value
(:func:`config_from_flags`), so a command decides its own defaults (the
node's, or the API's).  Values are checked by the table: a value out of range
is a ``ValueError`` naming the flag, e.g. ``--max-faces must be in 1..20, got 25``.
"""

import argparse

from .options import EstimatorConfig

#: Other spellings of a flag that takes a value (kept from earlier versions of the CLI).
SPELLINGS = {'num_threads': ('--threads',)}
#: Short forms that switch an option off (kept from earlier versions of the CLI).
OFF_SWITCHES = {'flip_average': '--no-flip', 'rigid_fusion': '--no-fusion',
                'perspective_warp': '--no-warp'}


def _num(value):
    """Spell a bound or default: integers in full (4194304, not 4.1943e+06), floats short."""
    return str(value) if isinstance(value, int) else f'{value:g}'


def flag_name(spec):
    """``--max-faces`` of the option whose parameter is ``max_faces``."""
    return '--' + spec.name.replace('_', '-')


def _specs(table, only, exclude):
    return [s for s in table.specs()
            if (only is None or s.field in only) and s.field not in exclude]


def add_option_flags(parser, base=None, *, only=None, exclude=(), title=None):
    """Add a flag per public option of ``base``'s table to ``parser``; return the specs.

    ``base`` (default: ``EstimatorConfig()``) gives the defaults shown in the
    help; ``only`` / ``exclude``: field names to keep or leave out.  Every flag
    stores ``None`` when not given (its ``dest`` is the field name).
    """
    base = EstimatorConfig() if base is None else base
    table = type(base)
    specs = _specs(table, only, exclude)
    group = parser.add_argument_group(title or f'{table.__name__} options (nlml_hpe.options)')
    for spec in specs:
        value = getattr(base, spec.field)
        text = spec.help.replace('%', '%%')
        if spec.type is bool:
            if value is not None:
                text += f' (default: {"on" if value else "off"})'
            group.add_argument(flag_name(spec), dest=spec.field, default=None,
                               action=argparse.BooleanOptionalAction, help=text)
            if spec.field in OFF_SWITCHES:
                group.add_argument(OFF_SWITCHES[spec.field], dest=spec.field,
                                   action='store_const', const=False, default=None,
                                   help=f'the same as --no-{flag_name(spec)[2:]}')
            continue
        if spec.bounds is not None:
            text += f' ({_num(spec.low)}..{_num(spec.high)}'
            text += ')' if value is None else f'; default {_num(value)})'
        group.add_argument(flag_name(spec), *SPELLINGS.get(spec.field, ()), dest=spec.field,
                           default=None, type=spec.type, metavar=spec.type.__name__.upper(),
                           help=text)
    return specs


def given_options(args, specs):
    """``{field: value}`` of the flags of ``specs`` given in ``args`` (parsed)."""
    return {s.field: getattr(args, s.field) for s in specs
            if getattr(args, s.field, None) is not None}


def config_from_flags(args, specs, base=None):
    """Return ``base`` (default: ``EstimatorConfig()``) updated with the given flags.

    Raises ``ValueError`` naming the flag when a value is out of the table's
    range or otherwise refused by it.
    """
    base = EstimatorConfig() if base is None else base
    given = given_options(args, specs)
    for spec in specs:
        if spec.field not in given:
            continue
        value = given[spec.field]
        if spec.bounds is not None and not spec.low <= value <= spec.high:
            raise ValueError(f'{flag_name(spec)} must be in {_num(spec.low)}..{_num(spec.high)}, '
                             f'got {value}')
        try:
            base = base.updated(**{spec.field: value})
        except ValueError as exc:
            raise ValueError(f'{flag_name(spec)}: {exc}') from None
    return base
