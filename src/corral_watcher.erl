%% @doc Ties a Corral port (and so its OS process tree) to any set of Erlang
%% processes: when any of them exits, for whatever reason, the port is closed
%% and the spawner stops the child's whole tree (stop signal, then SIGKILL
%% after `kill_timeout').
%%
%% A port already dies with its owner; a watcher adds more processes whose
%% death must take the child down too, such as the client a Daemon serves.
%% The stop is the graceful one of {@link corral:request_stop/1}: the owner
%% still receives the terminal message. The watcher ends by itself when the
%% port closes.
-module(corral_watcher).

-export([start/2, start_link/2, watch/2, unwatch/2, watched/1]).

%% @doc Starts an unlinked watcher of `Port' for `Pids'.
-spec start(port(), [pid()]) -> {ok, pid()} | {error, {bad_port, term()}}.
start(Port, Pids) -> start(Port, Pids, false).

%% @doc Like {@link start/2}, linked to the caller.
-spec start_link(port(), [pid()]) -> {ok, pid()} | {error, {bad_port, term()}}.
start_link(Port, Pids) -> start(Port, Pids, true).

%% @doc Adds `Pid' to the watched set. A pid that is already dead closes the
%% port at once, as if it had died while watched.
-spec watch(pid(), pid()) -> ok.
watch(Watcher, Pid) when is_pid(Pid) -> call(Watcher, {watch, Pid}).

%% @doc Removes `Pid' from the watched set.
-spec unwatch(pid(), pid()) -> ok.
unwatch(Watcher, Pid) when is_pid(Pid) -> call(Watcher, {unwatch, Pid}).

%% @doc The processes being watched.
-spec watched(pid()) -> [pid()].
watched(Watcher) -> call(Watcher, watched).

start(Port, Pids, Link) when is_port(Port), is_list(Pids) ->
    case erlang:port_info(Port, id) of
        undefined ->
            {error, {bad_port, Port}};
        _ ->
            Spawn =
                case Link of
                    true -> fun proc_lib:spawn_link/1;
                    false -> fun proc_lib:spawn/1
                end,
            Parent = self(),
            Ref = make_ref(),
            Pid = Spawn(fun() -> init(Parent, Ref, Port, Pids) end),
            receive
                {Ref, ready} -> {ok, Pid}
            end
    end;
start(Port, _Pids, _Link) ->
    {error, {bad_port, Port}}.

init(Parent, Ref, Port, Pids) ->
    PortRef = erlang:monitor(port, Port),
    Watched = lists:foldl(fun add/2, #{}, Pids),
    Parent ! {Ref, ready},
    loop(Port, PortRef, Watched).

add(Pid, Watched) when is_map_key(Pid, Watched) -> Watched;
add(Pid, Watched) -> Watched#{Pid => erlang:monitor(process, Pid)}.

loop(Port, PortRef, Watched) ->
    receive
        {'DOWN', PortRef, port, Port, _} ->
            ok;
        {'DOWN', _Ref, process, Pid, _Reason} when is_map_key(Pid, Watched) ->
            %% The owner still gets its terminal message, as after stop/1.
            _ = corral:request_stop(Port),
            wait_closed(PortRef, Port);
        {call, From, Tag, {watch, Pid}} ->
            From ! {Tag, ok},
            loop(Port, PortRef, add(Pid, Watched));
        {call, From, Tag, {unwatch, Pid}} ->
            {Ref, Rest} =
                case maps:take(Pid, Watched) of
                    error -> {undefined, Watched};
                    Found -> Found
                end,
            Ref =:= undefined orelse erlang:demonitor(Ref, [flush]),
            From ! {Tag, ok},
            loop(Port, PortRef, Rest);
        {call, From, Tag, watched} ->
            From ! {Tag, maps:keys(Watched)},
            loop(Port, PortRef, Watched)
    end.

wait_closed(PortRef, Port) ->
    receive
        {'DOWN', PortRef, port, Port, _} -> ok
    end.

call(Watcher, Request) ->
    Mref = erlang:monitor(process, Watcher),
    Watcher ! {call, self(), Mref, Request},
    receive
        {Mref, Reply} ->
            erlang:demonitor(Mref, [flush]),
            Reply;
        {'DOWN', Mref, process, _, Reason} ->
            erlang:error({corral_watcher, Reason})
    end.
