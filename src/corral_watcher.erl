%% @doc Ties a Corral port (and so its OS process tree) to any set of Erlang
%% processes: when any of them exits, for whatever reason, the port is closed
%% and the spawner stops the child's whole tree (stop signal, then SIGKILL
%% after `kill_timeout').
%%
%% A port already dies with its owner; a watcher adds more processes whose
%% death must take the child down too, such as the client a daemon serves.
%% The stop is the graceful one of {@link corral:request_stop/1}: the owner
%% still receives the terminal message. The watcher ends by itself (reason
%% `normal') when the port closes.
%%
%% A watched process is named by its pid or by a registered name. A name is
%% resolved to its pid when it is given (to {@link start/2} or {@link
%% watch/2}); the watcher then follows that process, not the name, and a
%% name that nothing is registered under is refused with
%% `{error, {not_registered, Name}}'. Anything else is refused with
%% `{error, {bad_pid, Term}}', and a port that is not an open Corral port
%% with `{error, {bad_port, Term}}'. These checks run in the caller, before
%% the watcher is spawned.
%%
%% The watcher is a `gen_server'; {@link child_spec/1} and {@link
%% start_link/2} put it under a supervisor. Its child spec is `temporary':
%% a watcher that ended because its port closed has nothing left to watch.
-module(corral_watcher).
-behaviour(gen_server).

-export([start/2, start_link/2, child_spec/1, watch/2, unwatch/2, watched/1]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2]).

-export_type([watched/0, start_error/0]).

-type watched() :: pid() | atom().
-type start_error() ::
    {bad_port, term()} | {bad_pid, term()} | {bad_pids, term()} | {not_registered, atom()}.

-record(state, {
    port :: port(),
    port_ref :: reference(),
    watched = #{} :: #{pid() => reference()},
    stopping = false :: boolean()
}).

%%% ------------------------------------------------------------------------
%%% API

%% @doc Starts an unlinked watcher of `Port' for `Pids'.
-spec start(port(), [watched()]) -> {ok, pid()} | {error, start_error()}.
start(Port, Pids) -> start(start, Port, Pids).

%% @doc Like {@link start/2}, linked to the caller (a supervisor's start
%% function).
-spec start_link(port(), [watched()]) -> {ok, pid()} | {error, start_error()}.
start_link(Port, Pids) -> start(start_link, Port, Pids).

%% @doc A child spec for a supervisor: `Arg' is `[Port, Pids]', or a
%% proplist (an Elixir keyword list) with `port', `pids' and optionally
%% `id' (default `corral_watcher'). The spec is
%% `#{id => Id, start => {corral_watcher, start_link, [Port, Pids]},
%% restart => temporary, shutdown => 5000, type => worker}'.
-spec child_spec([port() | [watched()]] | [{port | pids | id, term()}]) ->
    supervisor:child_spec().
child_spec([Port, Pids]) when is_port(Port) ->
    spec(?MODULE, Port, Pids);
child_spec(Opts) when is_list(Opts) ->
    lists:foreach(
        fun
            ({K, _}) when K =:= port; K =:= pids; K =:= id -> ok;
            (Other) -> erlang:error({bad_option, Other})
        end,
        Opts
    ),
    Get = fun(K) ->
        case lists:keyfind(K, 1, Opts) of
            {K, V} -> V;
            false -> erlang:error({missing_option, K})
        end
    end,
    spec(proplists:get_value(id, Opts, ?MODULE), Get(port), Get(pids));
child_spec(Other) ->
    erlang:error({bad_child_spec_arg, Other}).

spec(Id, Port, Pids) ->
    #{
        id => Id,
        start => {?MODULE, start_link, [Port, Pids]},
        restart => temporary,
        shutdown => 5000,
        type => worker,
        modules => [?MODULE]
    }.

%% @doc Adds a process to the watched set. A process that is already dead
%% closes the port at once, as if it had died while watched. Returns
%% `{error, closed}' when the watcher has ended (its port closed).
-spec watch(pid(), watched()) ->
    ok | {error, closed | {bad_pid, term()} | {not_registered, atom()}}.
watch(Watcher, Pid) -> call_resolved(Watcher, watch, Pid).

%% @doc Removes a process from the watched set. Returns `{error, closed}'
%% when the watcher has ended.
-spec unwatch(pid(), watched()) ->
    ok | {error, closed | {bad_pid, term()} | {not_registered, atom()}}.
unwatch(Watcher, Pid) -> call_resolved(Watcher, unwatch, Pid).

%% A registered name is resolved in the caller, so a bad one is its error.
call_resolved(Watcher, Op, Pid) ->
    case resolve(Pid) of
        {ok, P} -> call(Watcher, {Op, P});
        Error -> Error
    end.

%% @doc The pids being watched; `[]' once the watcher has ended.
-spec watched(pid()) -> [pid()].
watched(Watcher) ->
    case call(Watcher, watched) of
        {error, closed} -> [];
        Pids -> Pids
    end.

%%% ------------------------------------------------------------------------
%%% gen_server

%% @private
init({Port, Pids}) ->
    %% A port that closed since the caller checked it sends its 'DOWN' at
    %% once, and the watcher ends normally.
    PortRef = erlang:monitor(port, Port),
    {ok, lists:foldl(fun add/2, #state{port = Port, port_ref = PortRef}, Pids)}.

%% @private
handle_call({watch, Pid}, _From, S) ->
    {reply, ok, add(Pid, S)};
handle_call({unwatch, Pid}, _From, #state{watched = W} = S) ->
    case maps:take(Pid, W) of
        {Ref, Rest} ->
            erlang:demonitor(Ref, [flush]),
            {reply, ok, S#state{watched = Rest}};
        error ->
            {reply, ok, S}
    end;
handle_call(watched, _From, S) ->
    {reply, maps:keys(S#state.watched), S}.

%% @private
handle_cast(_, S) -> {noreply, S}.

%% @private
handle_info({'DOWN', Ref, port, Port, _}, #state{port = Port, port_ref = Ref} = S) ->
    {stop, normal, S};
handle_info({'DOWN', _Ref, process, Pid, _}, #state{watched = W} = S) when
    is_map_key(Pid, W)
->
    %% The owner still gets its terminal message, as after corral:stop/1; the
    %% watcher ends when the port closes.
    _ = S#state.stopping orelse corral:request_stop(S#state.port),
    {noreply, S#state{watched = maps:remove(Pid, W), stopping = true}};
handle_info(_, S) ->
    {noreply, S}.

%%% ------------------------------------------------------------------------
%%% Internals

start(How, Port, Pids) ->
    case validate(Port, Pids) of
        {ok, Resolved} -> gen_server:How(?MODULE, {Port, Resolved}, []);
        Error -> Error
    end.

validate(Port, Pids) ->
    case is_corral_port(Port) of
        false -> {error, {bad_port, Port}};
        true when not is_list(Pids) -> {error, {bad_pids, Pids}};
        true -> resolve_all(Pids, [])
    end.

is_corral_port(Port) when is_port(Port) ->
    erlang:port_info(Port, name) =:= {name, "corral_drv"};
is_corral_port(_) ->
    false.

resolve_all([], Acc) ->
    {ok, lists:reverse(Acc)};
resolve_all([P | Rest], Acc) ->
    case resolve(P) of
        {ok, Pid} -> resolve_all(Rest, [Pid | Acc]);
        Error -> Error
    end;
resolve_all(Improper, _Acc) ->
    {error, {bad_pids, Improper}}.

resolve(Pid) when is_pid(Pid) ->
    {ok, Pid};
resolve(Name) when is_atom(Name) ->
    case whereis(Name) of
        undefined -> {error, {not_registered, Name}};
        Pid -> {ok, Pid}
    end;
resolve(Other) ->
    {error, {bad_pid, Other}}.

add(Pid, #state{watched = W} = S) when is_map_key(Pid, W) -> S;
add(Pid, #state{watched = W} = S) -> S#state{watched = W#{Pid => erlang:monitor(process, Pid)}}.

%% A watcher ends when its port closes; a call that races with that is
%% answered as on a closed port rather than crashing the caller.
call(Watcher, Request) ->
    try
        gen_server:call(Watcher, Request, infinity)
    catch
        exit:{noproc, _} -> {error, closed};
        exit:{normal, _} -> {error, closed}
    end.
