%% The driver's request socket to the spawner never blocks a scheduler: a
%% spawner that stops reading fills it, and the requests that do not fit
%% wait in their callers (src/corral.erl) and end in {error, {eagain, spawn}}.
-module(corral_request_queue_tests).

-include_lib("eunit/include/eunit.hrl").

%% This VM's spawner: the child of ours whose command line names it.
spawner_pid() ->
    Vm = os:getpid(),
    [Pid] = [
        P
     || P <- filelib:wildcard("/proc/[0-9]*"),
        {ok, Stat} <- [file:read_file(P ++ "/stat")],
        ppid(Stat) =:= Vm,
        {ok, Cmd} <- [file:read_file(P ++ "/cmdline")],
        binary:match(Cmd, <<"corral_spawner">>) =/= nomatch
    ],
    filename:basename(Pid).

%% /proc/PID/stat: "pid (comm) S ppid ..."; comm may hold spaces or parens.
ppid(Stat) ->
    [_, After] = string:split(Stat, ") ", trailing),
    [_State, PPid | _] = string:split(After, " ", all),
    binary_to_list(PPid).

a_stopped_spawner_makes_spawns_wait_then_fail_test_() ->
    {timeout, 300, fun a_stopped_spawner_makes_spawns_wait_then_fail/0}.

a_stopped_spawner_makes_spawns_wait_then_fail() ->
    {_, 0} = corral:cmd("true", []),
    Spawner = spawner_pid(),
    %% Each request carries 800 KB of environment (in variables below the
    %% kernel's 128 KiB a string): a few fill the socket's 4 MiB.
    Env = [
        {<<"CORRAL_QUEUE_TEST", (integer_to_binary(I))/binary>>, binary:copy(<<"x">>, 100000)}
     || I <- lists:seq(1, 8)
    ],
    Me = self(),
    os:cmd("kill -STOP " ++ Spawner),
    %% Should a spawn block its scheduler after all, the spawner goes on
    %% again in a while, and the test fails below instead of hanging.
    Watchdog = string:trim(
        os:cmd(
            "(trap 'kill $s' TERM; sleep 90 & s=$!; wait $s && kill -CONT " ++ Spawner ++
                ") >/dev/null 2>&1 & echo $!"
        )
    ),
    try
        Callers = [
            spawn_link(fun() ->
                Me ! {spawned, self(), corral:spawn("true", [], [{env, Env}])},
                receive
                    done -> ok
                end
            end)
         || _ <- lists:seq(1, 8)
        ],
        %% The first that cannot be queued gives up while the spawner is
        %% still stopped.
        First =
            receive
                {spawned, _, R1} -> R1
            after 60000 -> no_answer
            end,
        ?assertEqual({error, {eagain, spawn}}, First),
        os:cmd("kill -CONT " ++ Spawner),
        %% The others were queued (they start now) or gave up the same way.
        Rest = [
            receive
                {spawned, _, R2} -> R2
            after 60000 -> no_answer
            end
         || _ <- lists:seq(2, 8)
        ],
        ?assert(lists:all(fun ok_or_eagain/1, Rest)),
        ?assert(lists:any(fun(R3) -> element(1, R3) =:= ok end, Rest)),
        [C ! done || C <- Callers],
        %% The spawner serves on.
        ?assertMatch({_, 0}, corral:cmd("true", []))
    after
        os:cmd("kill -CONT " ++ Spawner ++ "; kill " ++ Watchdog)
    end.

ok_or_eagain({ok, Port, _}) -> is_port(Port);
ok_or_eagain({error, {eagain, spawn}}) -> true;
ok_or_eagain(_) -> false.
