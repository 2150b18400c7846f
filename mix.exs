defmodule Corral.MixProject do
  use Mix.Project

  def project do
    [
      app: :corral,
      version: "0.1.0",
      elixir: "~> 1.14",
      compilers: [:corral_native] ++ Mix.compilers(),
      erlc_paths: ["src"],
      elixirc_paths: elixirc_paths(Mix.env()),
      start_permanent: Mix.env() == :prod,
      deps: [],
      docs: [main: "readme", extras: ["README.md"]]
    ]
  end

  def application do
    [extra_applications: [:logger]]
  end

  defp elixirc_paths(:test), do: ["lib", "test/support"]
  defp elixirc_paths(_), do: ["lib"]
end

defmodule Mix.Tasks.Compile.CorralNative do
  @moduledoc "Builds the driver and the spawner with `make native` (hex is not reachable, so no elixir_make)."
  use Mix.Task.Compiler

  @impl true
  def run(_args) do
    case System.cmd("make", ["--no-print-directory", "native"], stderr_to_stdout: true) do
      {_, 0} ->
        :ok

      {out, status} ->
        Mix.shell().error(out)
        Mix.raise("make native failed with status #{status}")
    end
  end
end
