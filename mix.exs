defmodule Corral.MixProject do
  use Mix.Project

  @version "0.1.0"
  # Also in src/corral.app.src (`links`), for rebar3 and hex's Erlang side.
  @source_url "https://github.com/corral-run/corral"

  def project do
    [
      app: :corral,
      version: @version,
      elixir: "~> 1.14",
      compilers: [:corral_native] ++ Mix.compilers(),
      erlc_paths: ["src"],
      erlc_options: erlc_options(Mix.env()),
      elixirc_paths: elixirc_paths(Mix.env()),
      start_permanent: Mix.env() == :prod,
      deps: [],
      description:
        "Run OS programs from Erlang and Elixir, contained: backpressure, stdin, " <>
          "streams, and no orphans (process groups and cgroup v2 on Linux).",
      package: package(),
      source_url: @source_url,
      docs: [main: "readme", source_ref: "v#{@version}", extras: ["README.md", "LICENSE"]]
    ]
  end

  def application do
    [extra_applications: [:logger]]
  end

  # A warning fails Corral's own builds, as the Makefile's erlc does. A
  # project depending on Corral builds it in :prod, where a warning that a
  # newer OTP adds must not break that project's build.
  defp erlc_options(:prod), do: [:debug_info]
  defp erlc_options(_), do: [:debug_info, :warnings_as_errors]

  defp elixirc_paths(:test), do: ["lib", "test/support"]
  defp elixirc_paths(_), do: ["lib"]

  # What a hex tarball holds: the sources and everything `make priv` builds
  # them with, never build output (priv/, build/, _build/). include/ goes in
  # once there is one.
  defp package do
    files = ~w(lib src include c_src scripts Makefile mix.exs rebar.config .formatter.exs
         .clang-format README.md LICENSE CHANGELOG.md)

    [
      licenses: ["Apache-2.0"],
      links: %{"Source" => @source_url},
      files: Enum.filter(files, &File.exists?(Path.join(__DIR__, &1)))
    ]
  end
end

defmodule Mix.Tasks.Compile.CorralNative do
  @moduledoc """
  Builds the driver and the spawner into priv/ with `make priv` (hex is not
  reachable, so no elixir_make).

  `make priv` only checks that g++, cmake, make and erlang-dev are present and
  never installs anything: this compiler runs inside other people's
  `mix compile`.
  """
  use Mix.Task.Compiler

  @outputs ["priv/corral_drv.so", "priv/corral_spawner"]

  @impl true
  def run(args) do
    # This runs on every `mix compile` of a project that depends on Corral;
    # make, cmake and the package check take seconds even when nothing
    # changed, so they run only when a source is newer than priv/.
    # (The driver's opcode header is generated from include/corral_protocol.hrl.)
    sources =
      Path.wildcard("c_src/**/*.{cpp,h,txt}") ++
        ["include/corral_protocol.hrl", "Makefile", "scripts/deps.sh"]

    status =
      if "--force" in args or Mix.Utils.stale?(sources, @outputs) do
        make_priv()
        :ok
      else
        :noop
      end

    # Mix lays out _build/<env>/lib/corral (linking or copying priv/) before
    # any compiler runs, so on the very first build priv/ did not exist yet
    # and would be missing from _build and from releases. Laying it out again
    # now links or copies the fresh priv/.
    Mix.Project.build_structure()
    {status, []}
  end

  defp make_priv do
    case System.cmd("make", ["--no-print-directory", "priv"], stderr_to_stdout: true) do
      {out, 0} ->
        if out != "", do: Mix.shell().info(String.trim_trailing(out))
        # make may leave an output untouched when a source change did not
        # affect it (a comment in CMakeLists.txt): stale? must not stay true.
        Enum.each(@outputs, &File.touch!/1)

      {out, status} ->
        Mix.shell().error(String.trim_trailing(out))
        Mix.raise("Corral's native build (make priv) failed with status #{status}")
    end
  end
end
