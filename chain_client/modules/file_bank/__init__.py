"""File bank: storage deals, files, references and restoral orders.

A file (fid) is a set of segments, each of ``total_shards`` fragments placed on miners.
Its life: ``deal`` (declared; territory and miners' idle space locked) until every
fragment's miner has reported the transfer, then ``active`` (locked becomes used and
service space, each miner owes an idle replacement). References are per (owner, key):
several keys may share a fid, each charging its own territory, and the file goes away
with its last reference.

A fragment whose miner fails (a failed or missed proof, a reported loss, exit, a long
absence) gets a restoral order; a gateway claims it, rebuilds the fragment elsewhere and
completes the order with the new miner's signed receipt, which moves the record and the
space accounting.

Modules: ``schema`` (tables and row readers), ``references`` (references and the space
they hold), ``deals`` (declaration, transfer reports, reassignment, timeouts),
``restoral`` (restoral orders), ``queries``; this one holds the module's table of calls.
"""

from chain_client.modules.file_bank.deals import (
    DeclarationArgs,
    FidsArgs,
    ReassignArgs,
    reassign_fragment,
    time_out_deals,
    transfer_report,
    transfer_reports,
    upload_declaration,
)
from chain_client.modules.file_bank.queries import (
    DeclaredArgs,
    FragmentIdArgs,
    MinerFragmentsArgs,
    ObjectsArgs,
    OrdersArgs,
    query_file,
    query_files_declared_by,
    query_fragment,
    query_miner_fragments,
    query_object,
    query_objects,
    query_restoral_orders,
)
from chain_client.modules.file_bank.references import delete_file, release_expired_territories
from chain_client.modules.file_bank.restoral import (
    CompleteArgs,
    claim_restoral_order,
    generate_restoral_order,
    lapse_restoral_claims,
    open_restoral_order,
    order_restoral_for_gone_miners,
    restoral_order_complete,
)
from chain_client.modules.file_bank.schema import (
    NAME,
    SCHEMA,
    DeleteArgs,
    FidArgs,
    FragmentArgs,
    active_fragment,
    active_fragment_at,
    active_fragment_count,
    file_row,
    fragment_row,
    fragments_of_miner,
    holds,
)
from chain_client.runtime import CallContext, CallSpec, ModuleSpec, QuerySpec

__all__ = [
    "MODULE",
    "FragmentArgs",
    "active_fragment",
    "active_fragment_at",
    "active_fragment_count",
    "file_row",
    "fragment_row",
    "fragments_of_miner",
    "holds",
    "open_restoral_order",
]


def on_finalize(ctx: CallContext) -> None:
    time_out_deals(ctx)
    release_expired_territories(ctx)
    order_restoral_for_gone_miners(ctx)
    lapse_restoral_claims(ctx)


MODULE = ModuleSpec(
    name=NAME,
    schema=SCHEMA,
    calls=(
        CallSpec("upload_declaration", DeclarationArgs, upload_declaration, weight=5),
        CallSpec("transfer_report", FidArgs, transfer_report),
        CallSpec("transfer_reports", FidsArgs, transfer_reports, weight=2),
        CallSpec("reassign_fragment", ReassignArgs, reassign_fragment),
        CallSpec("delete_file", DeleteArgs, delete_file),
        CallSpec("generate_restoral_order", FragmentArgs, generate_restoral_order),
        CallSpec("claim_restoral_order", FragmentArgs, claim_restoral_order),
        CallSpec("restoral_order_complete", CompleteArgs, restoral_order_complete),
    ),
    queries=(
        QuerySpec("file", FidArgs, query_file),
        QuerySpec("object", DeleteArgs, query_object),
        QuerySpec("objects", ObjectsArgs, query_objects),
        QuerySpec("fragment", FragmentIdArgs, query_fragment),
        QuerySpec("miner_fragments", MinerFragmentsArgs, query_miner_fragments),
        QuerySpec("restoral_orders", OrdersArgs, query_restoral_orders),
        QuerySpec("files_declared_by", DeclaredArgs, query_files_declared_by),
    ),
    on_finalize=on_finalize,
)
