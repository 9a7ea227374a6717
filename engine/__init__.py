"""emtui's science: study files, data, training, generation, judging, statistics.

Never imports textual or emtui; usable from a notebook. Heavy libraries (torch,
transformers, peft, trl) are imported inside the functions that need them.
"""
