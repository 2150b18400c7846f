#!/usr/bin/env escript
%% Writes the seed corpus of the fuzz targets from requests built the way
%% the Erlang side builds them (corral_opts:normalize/4), so the seeds are
%% real wire data. Run from the repository root after `make erlang`:
%%   escript c_src/fuzz/make_seeds.escript
%% spawn_spec/NAME  the request term (term_to_binary of the option map)
%% frame/NAME       one fuzz input of the frame target: a byte of fds to
%%                  attach (0..5), then a whole frame as it travels
%% control/NAME     one fuzz input of the control target: the opcode byte,
%%                  then a port_control payload as corral.erl makes it
-mode(compile).

main(_) ->
    true = code:add_patha("ebin"),
    Dir = "c_src/fuzz/corpus",
    %% A fixed environment, not this machine's (normalize/4 would copy os:env()).
    Env = [{"HOME", "/home/corral"}, {"PATH", "/usr/bin:/bin"}, {"LANG", "C.UTF-8"}],
    Requests = [
        {"echo", "/bin/echo", ["hello"], []},
        {"sh_stdin_null", "/bin/sh", ["-c", "exit 3"], [{stdin, null}, {stderr, stdout}]},
        {"cd_relative", "/bin/pwd", [], [{cd, "sub/dir"}, {stdout, pipe}]},
        {"cd_absolute", "/bin/ls", ["-l"], [{cd, <<"/tmp">>}, {stderr, null}]},
        {"arg0_unicode", "/bin/cat", [<<"Grüße"/utf8>>, "-"], [{arg0, "kätzchen"}]},
        {"stderr_inherit", "/bin/true", [], [{stderr, inherit}, {stdout, null}]},
        {"kill_timeout_big", "/bin/sleep", ["30"],
         [{kill_timeout, 1 bsl 40}, {stop_signal, sigint}, {pipe_size, 0}]},
        {"kill_timeout_zero", "/bin/sleep", ["1"], [{kill_timeout, 0}, {stop_signal, 64}]},
        {"pipe_size_large", "/bin/cat", [], [{pipe_size, 1048576}, {window, 4096}]},
        {"many_args", "/bin/echo", [integer_to_list(I) || I <- lists:seq(1, 40)], []},
        {"env_empty", "/bin/env", [], [{clear_env, true}]},
        {"memory_events", "/bin/sleep", ["1"],
         [{cgroup, #{memory_max => 67108864}}, {memory_events, [max, oom_kill]}]}
    ],
    lists:foreach(
        fun({Name, Cmd, Args, Opts0}) ->
            Opts =
                case lists:keymember(clear_env, 1, Opts0) of
                    true -> Opts0;
                    false -> [{clear_env, true}, {env, Env} | Opts0]
                end,
            {ok, #{request := Req}} =
                corral_opts:normalize(Cmd, Args, Opts, corral_opts:keys(open)),
            Term = term_to_binary(Req),
            write(Dir, "spawn_spec", Name, Term),
            %% The Spawn frame the driver sends: b = the term's length, then
            %% the VM's working directory; one fd (the control socket).
            write(Dir, "frame", "spawn_" ++ Name,
                  [1, frame(1, 0, byte_size(Term), [Term, "/home/corral/app"])]),
            Spawner = <<"/app/lib/corral/priv/corral_spawner">>,
            write(Dir, "control", "spawn_" ++ Name,
                  [1, <<1048576:64/native, (byte_size(Spawner)):32/native>>, Spawner, Term])
        end,
        Requests
    ),
    Frames = [
        {"fds_all", 3, frame(16, 4242, 7, "/sys/fs/cgroup/corral.1/c0")},
        {"fds_none", 0, frame(16, 4242, 0, "")},
        {"exit_status", 0, frame(17, 3 bsl 8, 0, "")},
        {"exit_signal", 0, frame(17, 9, 0, "")},
        {"error_exec", 0, frame(18, 2, 0, "exec")},
        {"events_max_oom_kill", 0, frame(19, 2#10100, 0, <<7:64/little, 1:64/little>>)},
        {"signal", 0, frame(32, 15, 0, "")},
        {"stop", 0, frame(33, 0, 0, "")},
        {"spawn_no_cwd", 1, frame(1, 0, 0, term_to_binary(#{path => <<"/bin/true">>}))}
    ],
    [write(Dir, "frame", N, [Fds, F]) || {N, Fds, F} <- Frames],
    Controls = [
        {"ack", 2, <<65536:64/native>>},
        {"signal_term", 3, <<15:32/native>>},
        {"signal_zero", 3, <<0:32/native>>},
        {"close_stdin", 4, <<>>},
        {"stop", 5, <<>>},
        {"stats", 6, <<>>},
        {"os_pid", 7, <<>>},
        {"set_window", 8, <<4096:64/native>>},
        {"spawn_empty_term", 1, <<1:64/native, 2:32/native, "/s">>},
        %% corral_cgroup's requests of the cgroup table (cgroup_table.h).
        {"cgroup_v1_table", 10, <<"T">>},
        {"cgroup_v1_get", 10, <<"G", 0, "cpu.max", 0, "+-1\n", 0, "+100000\n">>},
        {"cgroup_v1_set", 10, <<"S", 0, "memory.swap.max", 0, "1M", 0, "-", 0, "+67108864\n">>}
    ],
    [write(Dir, "control", N, [Op, Payload]) || {N, Op, Payload} <- Controls],
    ok.

frame(Type, A, B, Payload) ->
    [<<Type:32/little, 0:32, A:64/little-signed, B:64/little-signed>>, Payload].

write(Dir, Target, Name, Data) ->
    Path = filename:join([Dir, Target, Name]),
    ok = filelib:ensure_dir(Path),
    ok = file:write_file(Path, Data).
