%% EUnit tests of corral_watcher: argument checks, registered names, and the
%% watcher under a supervisor.
-module(corral_watcher_tests).

-include_lib("eunit/include/eunit.hrl").

%% The tests' own supervisor.
-behaviour(supervisor).
-export([init/1]).

init([]) -> {ok, {#{strategy => one_for_one}, []}}.

%% Every bad argument is an error returned to the caller, well within a
%% second (the old watcher crashed in its init and left the caller waiting
%% forever).
bad_arguments_are_errors_test_() ->
    {timeout, 30, fun() ->
        {ok, Port} = corral:open("sleep", ["30"], []),
        NotCorral = open_port({spawn, "cat"}, []),
        Cases = [
            {{bad_pid, 42}, Port, [42]},
            {{bad_pid, "pid"}, Port, [self(), "pid"]},
            {{bad_pid, {name, node()}}, Port, [{name, node()}]},
            {{bad_pids, not_a_list}, Port, not_a_list},
            {{bad_pids, improper}, Port, [self() | improper]},
            {{not_registered, corral_watcher_no_such_name}, Port, [corral_watcher_no_such_name]},
            {{bad_port, not_a_port}, not_a_port, [self()]},
            {{bad_port, NotCorral}, NotCorral, [self()]}
        ],
        lists:foreach(
            fun({Reason, P, Pids}) ->
                [
                    begin
                        {Us, Result} = timer:tc(corral_watcher, Start, [P, Pids]),
                        ?assertEqual({error, Reason}, Result),
                        ?assert(Us < 1000000)
                    end
                 || Start <- [start, start_link]
                ]
            end,
            Cases
        ),
        port_close(NotCorral),
        %% None of the refusals touched the child.
        {ok, OsPid} = corral:os_pid(Port),
        ?assert(alive(OsPid)),
        ?assertMatch({exit_signal, _}, corral:stop(Port))
    end}.

%% A registered name is resolved when it is given: the watcher follows the
%% process, so its death stops the child, whatever the name does later.
registered_name_is_resolved_test_() ->
    {timeout, 30, fun() ->
        {ok, Port} = corral:open("sleep", ["30"], []),
        {ok, OsPid} = corral:os_pid(Port),
        Client = spawn(fun() -> receive stop -> ok end end),
        true = register(corral_watcher_client, Client),
        {ok, W} = corral_watcher:start(Port, [corral_watcher_client]),
        ?assertEqual([Client], corral_watcher:watched(W)),
        %% unwatch and watch take names too.
        ?assertEqual(ok, corral_watcher:unwatch(W, corral_watcher_client)),
        ?assertEqual([], corral_watcher:watched(W)),
        ?assertEqual(
            {error, {not_registered, corral_watcher_nobody}},
            corral_watcher:watch(W, corral_watcher_nobody)
        ),
        ?assertEqual({error, {bad_pid, 42}}, corral_watcher:watch(W, 42)),
        ?assertEqual(ok, corral_watcher:watch(W, corral_watcher_client)),
        Ref = monitor(process, W),
        Client ! stop,
        receive
            {'DOWN', Ref, process, W, Reason} -> ?assertEqual(normal, Reason)
        after 5000 -> error(watcher_did_not_end)
        end,
        %% The owner (this process) still gets the terminal message.
        ?assertEqual({exit_signal, 15}, corral:await_terminal(Port, 5000)),
        ?assertNot(alive(OsPid)),
        %% An ended watcher answers like a closed port.
        ?assertEqual({error, closed}, corral_watcher:watch(W, self())),
        ?assertEqual([], corral_watcher:watched(W))
    end}.

under_a_supervisor_test_() ->
    {timeout, 30, fun() ->
        {ok, Port} = corral:open("sleep", ["30"], []),
        {ok, OsPid} = corral:os_pid(Port),
        Client = spawn(fun() -> receive stop -> ok end end),
        Spec = corral_watcher:child_spec([Port, [Client]]),
        ?assertMatch(
            #{id := corral_watcher, start := {corral_watcher, start_link, [Port, [Client]]}},
            Spec
        ),
        ?assertEqual(
            Spec#{id := w},
            corral_watcher:child_spec([{port, Port}, {pids, [Client]}, {id, w}])
        ),
        {ok, Sup} = supervisor:start_link(?MODULE, []),
        unlink(Sup),
        {ok, W} = supervisor:start_child(Sup, Spec),
        ?assertEqual([Client], corral_watcher:watched(W)),
        %% A start that fails its checks is a start error for the supervisor.
        ?assertMatch(
            {error, {{bad_pid, 42}, _}},
            supervisor:start_child(Sup, Spec#{id := bad, start := {corral_watcher, start_link, [Port, [42]]}})
        ),
        Client ! stop,
        ?assertEqual({exit_signal, 15}, corral:await_terminal(Port, 5000)),
        ?assertNot(alive(OsPid)),
        %% The watcher ended normally with its port, and being temporary it
        %% is not restarted.
        wait_until(fun() -> supervisor:which_children(Sup) =:= [] end),
        ?assert(is_process_alive(Sup)),
        exit(Sup, shutdown)
    end}.

wait_until(Fun) -> wait_until(Fun, 200).
wait_until(Fun, 0) -> ?assert(Fun());
wait_until(Fun, N) ->
    case Fun() of
        true ->
            ok;
        false ->
            timer:sleep(10),
            wait_until(Fun, N - 1)
    end.

alive(Pid) ->
    case file:read_file("/proc/" ++ integer_to_list(Pid) ++ "/stat") of
        {ok, Stat} ->
            [_, After] = string:split(Stat, ") ", trailing),
            not lists:prefix("Z", binary_to_list(After));
        {error, _} ->
            false
    end.
