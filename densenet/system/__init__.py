"""The machine and the process: thread and engine settings (runtime), CPU description
(machine), file writing (files), MXNet's private internals (mxcompat) and the local
parameter-server cluster (launch)."""
