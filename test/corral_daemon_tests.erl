%% EUnit tests for corral_daemon, the Erlang daemon API (logging through
%% logger). The Elixir suite (corral_daemon_test.exs) covers the rest.
-module(corral_daemon_tests).

-include_lib("eunit/include/eunit.hrl").

%% A logger handler that sends every event to a test process, and a
%% supervisor of the given child specs.
-export([log/2, init/1]).

init(Specs) -> {ok, {#{strategy => one_for_one}, Specs}}.

log(#{msg := Msg, level := Level, meta := Meta}, #{config := #{pid := Pid}}) ->
    Pid ! {logged, Level, Msg, Meta},
    ok.

with_handler(Fun) ->
    Config = #{config => #{pid => self()}, level => all},
    ok = logger:add_handler(corral_daemon_tests_h, ?MODULE, Config),
    OldLevel = maps:get(level, logger:get_primary_config()),
    ok = logger:set_primary_config(level, all),
    try
        Fun()
    after
        logger:set_primary_config(level, OldLevel),
        logger:remove_handler(corral_daemon_tests_h)
    end.

%% Runs Fun with exits trapped, and leaves the test process as it was.
trapping(Fun) ->
    Old = process_flag(trap_exit, true),
    try
        Fun()
    after
        process_flag(trap_exit, Old),
        flush_exits()
    end.

flush_exits() ->
    receive
        {'EXIT', _, _} -> flush_exits()
    after 0 -> ok
    end.

await_exit(Pid) ->
    receive
        {'EXIT', Pid, Reason} -> Reason
    after 5000 -> error(timeout)
    end.

text({string, Chardata}) -> unicode:characters_to_binary(Chardata);
text(Other) -> Other.

%% Lines reach logger at their stream's level, with the prefix and the
%% stream in the metadata; the last line is logged without its newline.
logger_levels_test() ->
    trapping(fun logger_levels/0).

logger_levels() ->
    with_handler(fun() ->
        {ok, Pid} = corral_daemon:start_link(
            "sh",
            ["-c", "echo out; echo err >&2; printf last"],
            [
                {log_output, notice},
                {log_stderr_level, error},
                {log_prefix, "d: "},
                {logger_metadata, [{unit, t}]}
            ]
        ),
        ?assertEqual(normal, await_exit(Pid)),
        Events = collect_logged([]),
        Find = fun(T) -> [{L, M} || {L, Msg, M} <- Events, text(Msg) =:= T] end,
        ?assertMatch([{notice, #{corral_stream := stdout, unit := t}}], Find(<<"d: out">>)),
        ?assertMatch([{error, #{corral_stream := stderr}}], Find(<<"d: err">>)),
        ?assertMatch([{notice, _}], Find(<<"d: last">>))
    end).

collect_logged(Acc) ->
    receive
        {logged, L, Msg, Meta} -> collect_logged([{L, Msg, Meta} | Acc])
    after 0 -> lists:reverse(Acc)
    end.

exit_reasons_test() ->
    trapping(fun exit_reasons/0).

exit_reasons() ->
    {ok, A} = corral_daemon:start_link("sh", ["-c", "exit 5"], []),
    ?assertEqual({exit_status, 5}, await_exit(A)),
    ToReason = fun(N) -> {bad, N} end,
    {ok, B} = corral_daemon:start_link("sh", ["-c", "exit 6"], [{exit_status_to_reason, ToReason}]),
    ?assertEqual({bad, 6}, await_exit(B)),
    {ok, C} = corral_daemon:start_link("sleep", ["60"], []),
    os:cmd("kill -TERM " ++ integer_to_list(corral_daemon:os_pid(C))),
    ?assertEqual({exit_signal, 15}, await_exit(C)).

child_spec_test() ->
    Spec = corral_daemon:child_spec(["sleep", ["60"], [{id, d}, {restart, transient}, {shutdown, 300}]]),
    #{id := d, restart := transient, shutdown := 300, start := {corral_daemon, start_link, [[Cmd, Args, Opts]]}} =
        Spec,
    ?assertEqual({"sleep", ["60"]}, {Cmd, Args}),
    ?assertEqual(300, proplists:get_value(shutdown, Opts)),
    {ok, Sup} = supervisor:start_link(?MODULE, [corral_daemon:child_spec(["sleep", ["60"], [{id, d}]])]),
    [{d, Pid, worker, _}] = supervisor:which_children(Sup),
    OsPid = corral_daemon:os_pid(Pid),
    ok = supervisor:terminate_child(Sup, d),
    %% The program is gone when terminate_child returns.
    ?assertNot(alive(OsPid)),
    unlink(Sup),
    exit(Sup, shutdown).

alive(OsPid) ->
    case file:read_file("/proc/" ++ integer_to_list(OsPid) ++ "/stat") of
        {ok, Stat} -> binary:match(Stat, <<") Z ">>) =:= nomatch;
        _ -> false
    end.

functions_test() ->
    Me = self(),
    ToMe = fun(L) -> Me ! {line, L} end,
    {ok, Pid} = corral_daemon:start_link("cat", [], [{logger_fun, ToMe}]),
    ok = corral_daemon:write(Pid, <<"ab\n">>),
    receive
        {line, L} -> ?assertEqual(<<"ab">>, L)
    after 2000 -> error(timeout)
    end,
    ?assertMatch(#{output_byte_count := 3, lines := 1, restarts := 0}, corral_daemon:statistics(Pid)),
    ?assertEqual({error, {bad_signal, nope}}, corral_daemon:signal(Pid, nope)),
    ?assertEqual({error, {bad_cgroup_file, "../x"}}, corral_daemon:cgget(Pid, "../x")),
    OsPid = corral_daemon:os_pid(Pid),
    unlink(Pid),
    ok = gen_server:stop(Pid),
    ?assertNot(alive(OsPid)).

errors_test() ->
    ?assertEqual(
        {error, {bad_option, log_output, loud}},
        corral_daemon:start_link("true", [], [{log_output, loud}])
    ),
    ?assertEqual(
        {error, {wait_for_failed, {throw, no}}},
        corral_daemon:start_link("true", [], [{wait_for, fun() -> throw(no) end}])
    ),
    ?assertEqual(
        {error, {ready_timeout, line, 100}},
        corral_daemon:start_link("sleep", ["60"], [{ready, {line, "never"}}, {ready_timeout, 100}])
    ).

%% While min_uptime holds the gen_server after the program exited, os_pid/1
%% returns `error' (the pid may be reused), as MuonTrap's may.
os_pid_after_exit_test() ->
    trapping(fun() ->
        {ok, Pid} = corral_daemon:start_link("sh", ["-c", "exit 1"], [{min_uptime, 300}]),
        ?assert(wait_until(fun() -> corral_daemon:write(Pid, <<"x">>) =:= {error, closed} end, 2000)),
        ?assertEqual(error, corral_daemon:os_pid(Pid)),
        ?assertEqual({exit_status, 1}, await_exit(Pid))
    end).

wait_until(Fun, Ms) when Ms =< 0 ->
    Fun();
wait_until(Fun, Ms) ->
    case Fun() of
        true ->
            true;
        false ->
            timer:sleep(10),
            wait_until(Fun, Ms - 10)
    end.
