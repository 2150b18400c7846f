# Tests that need root (cgroups, namespaces, uid changes) are tagged :root and
# skipped, with the reason printed, when not running as root.
root? = System.cmd("id", ["-u"]) |> elem(0) |> String.trim() == "0"

exclude =
  if root? do
    []
  else
    IO.puts("Skipping tests tagged :root: not running as root")
    [:root]
  end

ExUnit.start(exclude: exclude)
