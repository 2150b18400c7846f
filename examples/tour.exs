# A tour of Corral: `make demo` runs it. Each step prints what it shows.

defmodule Tour do
  def step(title, fun) do
    IO.puts("\n== #{title}")
    fun.()
  end

  def show(label, value),
    do: IO.puts("   #{label}: #{inspect(value, limit: 8, printable_limit: 200)}")

  def alive?(pid) do
    case File.read("/proc/#{pid}/stat") do
      {:ok, stat} -> not String.contains?(stat, ") Z ")
      _ -> false
    end
  end

  def sleeps(marker) do
    {out, _} = System.cmd("pgrep", ["-f", "sleep #{marker}"])
    String.split(out)
  end
end

Tour.step("cmd/3 is a drop-in for System.cmd/3", fn ->
  Tour.show(~s|Corral.cmd("echo", ["hello"])|, Corral.cmd("echo", ["hello"]))
  Tour.show(~s|System.cmd("echo", ["hello"])|, System.cmd("echo", ["hello"]))
  Tour.show("exit 3", Corral.cmd("sh", ["-c", "exit 3"]))
  Tour.show("killed by SIGKILL reads 128 + 9", Corral.cmd("sh", ["-c", "kill -9 $$"]))
end)

Tour.step("no lost tail: seq 1 100000, 20 runs, every byte every time", fn ->
  {expected, 0} = System.cmd("seq", ["1", "100000"])

  complete = Enum.count(1..20, fn _ -> Corral.cmd("seq", ["1", "100000"]) == {expected, 0} end)

  Tour.show("complete runs", "#{complete}/20 (#{byte_size(expected)} bytes each)")
end)

Tour.step("stdin: a binary or any Enumerable, then EOF", fn ->
  Tour.show("input: \"abc\" through cat", Corral.cmd("cat", [], input: "abc"))
  lines = Stream.map(1..3, &"line #{&1}\n")
  Tour.show("input: a Stream through sort -r", Corral.cmd("sort", ["-r"], input: lines))
end)

Tour.step("the child's setup: cd, env (nil unsets), arg0", fn ->
  Tour.show("cd: \"/tmp\"", Corral.cmd("pwd", [], cd: "/tmp"))

  Tour.show(
    "env",
    Corral.cmd("sh", ["-c", "echo $GREETING ${HOME-unset}"],
      env: [{"GREETING", "hi"}, {"HOME", nil}]
    )
  )

  Tour.show("arg0", Corral.cmd("sh", ["-c", "echo $0"], arg0: "renamed"))
end)

Tour.step("timeout kills the whole tree before cmd/3 returns", fn ->
  marker = "313.#{System.unique_integer([:positive])}"
  script = "sleep #{marker} & sleep #{marker} & wait"
  {us, result} = :timer.tc(fn -> Corral.cmd("sh", ["-c", script], timeout: 300) end)
  Tour.show("result after #{div(us, 1000)} ms", result)
  Tour.show("sleeps still running", Tour.sleeps(marker))
end)

Tour.step("backpressure: `yes` with an owner that never reads", fn ->
  {:ok, port} = :corral.open("yes", [], window: 65_536)
  before = :erlang.memory(:total)
  Process.sleep(1000)
  {:ok, stats} = :corral.stats(port)
  {:message_queue_len, queued} = Process.info(self(), :message_queue_len)
  Tour.show("bytes read from yes in 1 s", stats.bytes_out)
  Tour.show("messages waiting in the owner's mailbox", queued)
  Tour.show("VM memory growth (bytes)", :erlang.memory(:total) - before)
  Tour.show("stop/1 (graceful, waits for the tree)", :corral.stop(port))
end)

Tour.step("the owner dies, the child dies", fn ->
  parent = self()

  owner =
    spawn(fn ->
      {:ok, port} = :corral.open("sleep", ["600"], [])
      send(parent, :corral.os_pid(port))
      Process.sleep(:infinity)
    end)

  {:ok, pid} = receive do: (msg -> msg)
  Tour.show("sleep 600 alive before", Tour.alive?(pid))
  Process.exit(owner, :kill)
  Process.sleep(100)
  Tour.show("alive 100 ms after Process.exit(owner, :kill)", Tour.alive?(pid))
end)

Tour.step("streams: lazy, one window in memory, early halt stops the child", fn ->
  first = Corral.stream!("seq", ["1", "1000000000"]) |> Enum.take(1)
  Tour.show("Enum.take(1) of seq 1 1000000000", first |> hd() |> binary_part(0, 20))

  upper = ["hello ", "stream"] |> Corral.stream!("tr", ["a-z", "A-Z"]) |> Enum.join()
  Tour.show("an Enumerable piped through tr", upper)

  Tour.show(
    "Corral.stream ends with the status",
    Corral.stream("sh", ["-c", "echo out; exit 3"]) |> Enum.to_list()
  )

  try do
    Corral.stream!("sh", ["-c", "exit 4"]) |> Enum.to_list()
  rescue
    e -> Tour.show("Corral.stream! raises on a non-zero exit", Exception.message(e))
  end
end)

Tour.step("Corral.Process: write, read, await from anywhere", fn ->
  {:ok, p} = Corral.Process.start("cat", [])
  :ok = Corral.Process.write(p, "ping")
  Tour.show("read/2 after writing ping", Corral.Process.read(p))
  :ok = Corral.Process.close_stdin(p)
  Tour.show("read/2 after close_stdin", Corral.Process.read(p))
  waiter = Task.async(fn -> Corral.Process.await_exit(p) end)
  Tour.show("await_exit/2 from another process", Task.await(waiter))
  Tour.show("stats/1", Corral.Process.stats(p) |> Map.take([:bytes_in, :bytes_out]))
end)

Tour.step("Corral.Watcher: a second process whose death stops the child", fn ->
  {:ok, port, pid} = :corral.spawn("sleep", ["600"], [])
  client = spawn(fn -> receive do: (:bye -> :ok) end)
  {:ok, _} = Corral.Watcher.start(port, [client])
  send(client, :bye)
  Tour.show("owner receives", :corral.await_terminal(port, 5000))
  Tour.show("sleep 600 alive after the watched client exited", Tour.alive?(pid))
end)

Tour.step("clear errors", fn ->
  try do
    Corral.cmd("no-such-program", [])
  rescue
    e -> Tour.show("missing executable", Exception.message(e))
  end

  try do
    Corral.cmd("/etc/passwd", [])
  rescue
    e -> Tour.show("not executable", Exception.message(e))
  end

  try do
    Corral.cmd("pwd", [], cd: "/no/such/dir")
  rescue
    e -> Tour.show("bad cd", Exception.message(e))
  end

  try do
    Corral.cmd("true", [], colour: :red)
  rescue
    e -> Tour.show("unknown option", Exception.message(e))
  end

  Tour.show(~s|Erlang: :corral.open("/etc/passwd", [], [])|, :corral.open("/etc/passwd", [], []))
end)

IO.puts("\nTour complete.")
