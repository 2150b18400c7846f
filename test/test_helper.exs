# Some tests need root (cgroups, namespaces, uid changes) or a writable
# cgroup v2 tree. Where that is missing they are excluded, and the reason is
# printed: never skipped silently.
root? = System.cmd("id", ["-u"]) |> elem(0) |> String.trim() == "0"

cgroup2? =
  case File.read("/proc/self/mountinfo") do
    {:ok, info} -> info |> String.split("\n") |> Enum.any?(&String.contains?(&1, " - cgroup2 "))
    _ -> false
  end

# Where the spawner can give a child a controller: a v1 hierarchy that has
# it, or our own v2 group delegating it (its cgroup.subtree_control lists
# it). The v2 group is used when it delegates the controller.
cgroup_placement = fn controller ->
  mounts = File.read!("/proc/self/mountinfo") |> String.split("\n", trim: true)

  v1? =
    Enum.any?(mounts, fn line ->
      case String.split(line, " - ") do
        [_, "cgroup " <> rest] -> controller in String.split(List.last(String.split(rest)), ",")
        _ -> false
      end
    end)

  v2? =
    with [line | _] <- Enum.filter(mounts, &String.contains?(&1, " - cgroup2 ")),
         point = Enum.at(String.split(line), 4),
         {:ok, own} <- File.read("/proc/self/cgroup"),
         ["0::" <> path | _] <-
           Enum.filter(String.split(own, "\n"), &String.starts_with?(&1, "0::")),
         {:ok, text} <- File.read(Path.join([point, path, "cgroup.subtree_control"])) do
      controller in String.split(text)
    else
      _ -> false
    end

  %{v1: v1?, v2: v2?}
end

cgroup_controller? = fn controller ->
  %{v1: v1?, v2: v2?} = cgroup_placement.(controller)
  root? and (v1? or v2?)
end

cgroup_v1_only? = fn controller ->
  %{v1: v1?, v2: v2?} = cgroup_placement.(controller)
  root? and v1? and not v2?
end

exclusions = [
  {:root, root?, "not running as root"},
  {:cgroup_v2, root? and cgroup2?, "needs root and a cgroup v2 hierarchy"},
  {:cgroup_memory, cgroup_controller?.("memory"),
   "needs root and the memory controller (a v1 hierarchy, or delegated to our v2 group)"},
  {:cgroup_pids, cgroup_controller?.("pids"),
   "needs root and the pids controller (a v1 hierarchy, or delegated to our v2 group)"},
  {:cgroup_cpu, cgroup_controller?.("cpu"),
   "needs root and the cpu controller (a v1 hierarchy, or delegated to our v2 group)"},
  {:cgroup_v1_memory, cgroup_v1_only?.("memory"),
   "needs root and the memory controller on a v1 hierarchy only (v2 names translated)"},
  {:cgroup_v1_cpu, cgroup_v1_only?.("cpu"),
   "needs root and the cpu controller on a v1 hierarchy only (v2 names translated)"}
]

exclude =
  for {tag, available?, why} <- exclusions, not available? do
    IO.puts("Excluding tests tagged :#{tag}: #{why}")
    tag
  end

# assert_receive waits for events that come from OS processes; under load
# (CI, parallel builds) 100 ms, the default, is too short for a spawn.
ExUnit.start(exclude: exclude, assert_receive_timeout: 5000)
