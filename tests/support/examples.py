"""The README's two examples, importable so that tests run and type-check them."""

from __future__ import annotations

from datetime import timedelta
from typing import TypedDict

from sagas import Retry, Saga, call, long_running, step


class Order(TypedDict, total=False):
    customer: str
    total: float
    items: list[str]
    address: str
    shipment_id: str


order_saga = Saga[Order](
    "order",
    version=1,
    deadline=timedelta(hours=1),
    steps=[
        step("reserve-credit", to="credit.commands", command="ReserveCredit",
             payload=lambda d: {"customer": d["customer"], "amount": d["total"]},
             compensate=call("ReleaseCredit", lambda d: {"customer": d["customer"]})),
        step("reserve-stock", to="stock.commands", command="ReserveStock",
             payload=lambda d: {"items": d["items"]},
             compensate=call("ReleaseStock", lambda d: {"items": d["items"]}),
             retry=Retry(max_attempts=5, non_retryable=("OutOfStock",))),
        step("schedule-shipment", to="shipping.commands", command="ScheduleShipment",
             payload=lambda d: {"address": d["address"], "items": d["items"]},
             kind="pivot"),
    ],
)  # fmt: skip


class Vm(TypedDict, total=False):
    name: str
    size: str
    state: str


vm_saga = Saga[Vm](
    "provision-vm",
    version=1,
    steps=[
        long_running("create-vm", to="cloud.commands",
                     start=call("CreateVm", lambda d: {"name": d["name"], "size": d["size"]}),
                     status=call("GetVm", lambda d: {"name": d["name"]}),
                     cancel=call("DeleteVm", lambda d: {"name": d["name"]}),
                     every=timedelta(seconds=30),
                     done=lambda r: r["state"] == "running",
                     failed=lambda r: r["state"] == "error",
                     cancelled=lambda r: r["state"] == "deleted",
                     deadline=timedelta(minutes=10),
                     compensate=call("DeleteVm", lambda d: {"name": d["name"]})),
    ],
)  # fmt: skip
